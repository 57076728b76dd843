using System.Runtime.InteropServices;

namespace Pretrain.Shared.IO;

/// <summary>
/// fsync of a directory, which .NET has no API for: after a rename, the parent directory's entry is
/// durable only once the directory itself is synced (POSIX). A no-op on Windows, where NTFS journals renames.
/// </summary>
public static partial class DirectorySync
{
    private const int ReadOnlyDirectory = 0x10000; // O_RDONLY | O_DIRECTORY on Linux

    public static void Flush(string directory)
    {
        if (OperatingSystem.IsWindows())
            return;
        var fd = Open(directory, ReadOnlyDirectory);
        if (fd < 0)
            throw new IOException($"{directory}: open for fsync failed (errno {Marshal.GetLastPInvokeError()})");
        try
        {
            if (Fsync(fd) != 0)
                throw new IOException($"{directory}: fsync failed (errno {Marshal.GetLastPInvokeError()})");
        }
        finally
        {
            _ = Close(fd);
        }
    }

    [LibraryImport("libc", EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int Fsync(int fd);

    [LibraryImport("libc", EntryPoint = "close")]
    private static partial int Close(int fd);
}
