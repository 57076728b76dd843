using Pretrain.Shared.IO;

namespace Pretrain.Data.Shards;

/// <summary>
/// Publishing a file atomically: write it under a temporary name in the same folder, fsync it, rename it
/// over the final name, fsync the folder. A reader (or a resumed preparation) sees either no file or the
/// complete one, never a torn write, and a failed write leaves what was there before untouched.
/// </summary>
public static class AtomicFile
{
    /// <summary>
    /// The temporary name to write <paramref name="path"/> under; the process id keeps two writers apart.
    /// Leftovers of writers that died mid-write (killed <c>prepare</c> runs) are removed first: they are
    /// never mistaken for output, but a resumed run must not leave them lying beside its shards.
    /// </summary>
    public static string StartTemporary(string path)
    {
        string folder = Path.GetDirectoryName(Path.GetFullPath(path))!, prefix = Path.GetFileName(path) + ".tmp-";
        if (Directory.Exists(folder))
            foreach (var leftover in Directory.EnumerateFiles(folder, prefix + "*"))
                if (int.TryParse(Path.GetFileName(leftover)[prefix.Length..], out int pid) && !IsRunning(pid))
                    File.Delete(leftover);
        return $"{path}.tmp-{Environment.ProcessId}";
    }

    static bool IsRunning(int pid)
    {
        try
        {
            using var process = System.Diagnostics.Process.GetProcessById(pid);
            return !process.HasExited;
        }
        catch (ArgumentException)
        {
            return false;   // no such process
        }
    }

    /// <summary>Renames the (already fsynced) <paramref name="temporary"/> to <paramref name="path"/> and makes the rename durable.</summary>
    public static void Publish(string temporary, string path)
    {
        File.Move(temporary, path, overwrite: true);
        DirectorySync.Flush(Path.GetDirectoryName(Path.GetFullPath(path))!);
    }

    /// <summary>Writes <paramref name="bytes"/> to <paramref name="path"/> atomically (small files: index.json).</summary>
    public static void WriteAllBytes(string path, ReadOnlySpan<byte> bytes)
    {
        var temporary = StartTemporary(path);
        using (var stream = new FileStream(temporary, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            stream.Write(bytes);
            stream.Flush(flushToDisk: true);
        }
        Publish(temporary, path);
    }
}
