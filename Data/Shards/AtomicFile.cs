using Pretrain.Shared.IO;

namespace Pretrain.Data.Shards;

/// <summary>
/// Publishing a file atomically: write it under a temporary name in the same folder, fsync it, rename it
/// over the final name, fsync the folder. A reader (or a resumed preparation) sees either no file or the
/// complete one, never a torn write, and a failed write leaves what was there before untouched.
/// </summary>
public static class AtomicFile
{
    /// <summary>The temporary name for <paramref name="path"/>; the process id keeps two writers apart.</summary>
    public static string TemporaryPath(string path) => $"{path}.tmp-{Environment.ProcessId}";

    /// <summary>Renames the (already fsynced) <paramref name="temporary"/> to <paramref name="path"/> and makes the rename durable.</summary>
    public static void Publish(string temporary, string path)
    {
        File.Move(temporary, path, overwrite: true);
        DirectorySync.Flush(Path.GetDirectoryName(Path.GetFullPath(path))!);
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
}
