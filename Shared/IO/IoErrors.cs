namespace Pretrain.Shared.IO;

/// <summary>
/// What a file-system error means, in the words of errno, for one-line messages. On Linux .NET puts the
/// raw errno in <see cref="Exception.HResult"/> of the <see cref="IOException"/>s it raises for system calls.
/// </summary>
public static class IoErrors
{
    const int NoSpace = 28, ReadOnlyFileSystem = 30, QuotaExceeded = 122;

    /// <summary>"no space left on device", "read-only file system", … or the exception's own message.</summary>
    public static string Describe(Exception e) => e switch
    {
        IOException { HResult: NoSpace } => "no space left on device",
        IOException { HResult: ReadOnlyFileSystem } => "read-only file system",
        IOException { HResult: QuotaExceeded } => "disk quota exceeded",
        UnauthorizedAccessException => "permission denied",
        _ when e.Message.Contains("database or disk is full", StringComparison.Ordinal) => "no space left on device (database or disk is full)",
        _ => e.Message,
    };

    /// <summary>A file-system error (not a bug): worth one line naming the path and the errno's meaning, no stack trace.</summary>
    public static bool IsFileSystem(Exception e) => e is IOException or UnauthorizedAccessException;
}
