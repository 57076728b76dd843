using System.Runtime.InteropServices;

namespace Pretrain.Data.Shards;

/// <summary>
/// Publishing a file atomically: write it under a temporary name in the same folder, fsync it, rename it
/// over the final name, fsync the folder. A reader (or a resumed preparation) sees either no file or the
/// complete one, never a torn write, and a failed write leaves what was there before untouched.
/// </summary>
public static partial class AtomicFile
{
    private const int ReadOnlyDirectory = 0x10000; // O_RDONLY | O_DIRECTORY on Linux

    /// <summary>The temporary name for <paramref name="path"/>; the process id keeps two writers apart.</summary>
    public static string TemporaryPath(string path) => $"{path}.tmp-{Environment.ProcessId}";

    /// <summary>Renames the (already fsynced) <paramref name="temporary"/> to <paramref name="path"/> and makes the rename durable.</summary>
    public static void Publish(string temporary, string path)
    {
        File.Move(temporary, path, overwrite: true);
        SyncDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
    }

    /// <summary>Writes <paramref name="bytes"/> to <paramref name="path"/> atomically (small files: index.json).</summary>
    public static void WriteAllBytes(string path, ReadOnlySpan<byte> bytes)
    {
        var temporary = TemporaryPath(path);
        using (var stream = new FileStream(temporary, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            stream.Write(bytes);
            stream.Flush(flushToDisk: true);
        }
        Publish(temporary, path);
    }

    // .NET has no API to fsync a directory; after a rename POSIX makes the entry durable only once the
    // directory itself is synced. NTFS journals renames, so Windows needs nothing.
    private static void SyncDirectory(string directory)
    {
        if (OperatingSystem.IsWindows())
            return;
        var fd = Open(directory, ReadOnlyDirectory);
        if (fd < 0)
            throw new IOException($"{directory}: open for fsync failed (errno {Marshal.GetLastPInvokeError()})");
        var failed = Fsync(fd) != 0;
        var errno = Marshal.GetLastPInvokeError();
        _ = Close(fd);
        if (failed)
            throw new IOException($"{directory}: fsync failed (errno {errno})");
    }

    [LibraryImport("libc", EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int Fsync(int fd);

    [LibraryImport("libc", EntryPoint = "close")]
    private static partial int Close(int fd);
}
