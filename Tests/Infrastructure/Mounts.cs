using System.Diagnostics;
using System.Runtime.InteropServices;
using Xunit;

namespace Pretrain.Tests.Infrastructure;

/// <summary>
/// A small tmpfs or a read-only bind mount for the disk-failure tests (needs root; <see cref="MountFactAttribute"/>
/// skips elsewhere). Unmounted (lazily, so a process still inside cannot keep it) when disposed, also when the test fails.
/// </summary>
public sealed partial class Mount : IDisposable
{
    Mount(string path) => Path = path;

    public string Path { get; }

    /// <summary>A tmpfs of <paramref name="bytes"/> bytes on <paramref name="path"/> (created if missing).</summary>
    public static Mount Tmpfs(string path, long bytes)
    {
        Directory.CreateDirectory(path);
        Run("mount", "-t", "tmpfs", "-o", $"size={bytes}", "tmpfs", path);
        return new Mount(path);
    }

    /// <summary><paramref name="path"/> made read-only in place (a bind mount of itself, remounted ro).</summary>
    public static Mount ReadOnly(string path)
    {
        Directory.CreateDirectory(path);
        Run("mount", "--bind", path, path);
        var mount = new Mount(path);
        try { Run("mount", "-o", "remount,bind,ro", path); }
        catch { mount.Dispose(); throw; }
        return mount;
    }

    /// <summary>Why these mounts cannot be made here, or null.</summary>
    public static string? Unavailable() => Probe.Value;

    static readonly Lazy<string?> Probe = new(() =>
    {
        if (!OperatingSystem.IsLinux()) return "mounts need Linux";
        if (geteuid() != 0) return "mounting a tmpfs or a read-only bind needs root";
        var dir = Directory.CreateTempSubdirectory("pretrain-mount-probe-").FullName;
        try
        {
            using (Tmpfs(dir, 1 << 20)) { }
            return null;
        }
        catch (Exception e) { return "mount does not work here: " + e.Message; }
        finally { try { Directory.Delete(dir); } catch (IOException) { } }
    });

    static void Run(string file, params string[] args)
    {
        using var process = Process.Start(new ProcessStartInfo(file, args) { RedirectStandardError = true, RedirectStandardOutput = true })
                            ?? throw new InvalidOperationException($"cannot start {file}");
        if (!process.WaitForExit(TimeSpan.FromSeconds(10))) { process.Kill(); throw new TimeoutException($"{file} {string.Join(' ', args)} did not finish in 10 s"); }
        if (process.ExitCode != 0) throw new InvalidOperationException($"{file} {string.Join(' ', args)} exited {process.ExitCode}: {process.StandardError.ReadToEnd().Trim()}");
    }

    public void Dispose()
    {
        try { Run("umount", "-l", Path); } catch (InvalidOperationException) { }
    }

    [LibraryImport("libc")]
    private static partial uint geteuid();
}

/// <summary>A fact that needs <see cref="Mount"/>: skipped with the reason where mounts cannot be made.</summary>
public sealed class MountFactAttribute : FactAttribute
{
    public MountFactAttribute() => Skip = Mount.Unavailable();
}
