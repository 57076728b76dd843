using System.Security.Cryptography;
using System.Text;

namespace Pretrain.Worker.Collectives;

/// <summary>
/// Which host this process runs on, as far as sharing memory with a peer goes: a hash of the kernel's boot id
/// (/proc/sys/kernel/random/boot_id, one per boot of one machine, the same in every container on it) and this process's
/// network namespace (the inode behind /proc/self/ns/net). Two processes with equal ids may map the same /dev/shm file;
/// processes in different network namespaces — pods, or the network-namespace "hosts" our tests build on one machine —
/// count as different hosts and keep TCP, though they could often share memory. Only the hash travels (over the
/// authenticated ring connection, <see cref="LinkNegotiation"/>); null where it cannot be read (not Linux), which keeps TCP.
/// The ids decide only whether to try: the receiving rank then proves the memory is shared (<see cref="SharedRing.Open"/>).
/// </summary>
internal static class HostIdentity
{
    public const int Size = 32;

    private static readonly Lazy<byte[]?> Mine = new(Read);

    /// <summary>This process's host id, or null when it has none.</summary>
    public static byte[]? Current => Mine.Value;

    /// <summary>The id of a host with <paramref name="bootId"/> and network namespace <paramref name="networkNamespace"/> ("net:[4026531840]").</summary>
    public static byte[] Of(string bootId, string networkNamespace) =>
        SHA256.HashData(Encoding.UTF8.GetBytes($"pretrain/host/v1\n{bootId.Trim()}\n{networkNamespace.Trim()}"));

    private static byte[]? Read()
    {
        if (!OperatingSystem.IsLinux()) return null;
        try
        {
            var boot = File.ReadAllText("/proc/sys/kernel/random/boot_id");
            var network = new FileInfo("/proc/self/ns/net").LinkTarget;
            return string.IsNullOrWhiteSpace(boot) || string.IsNullOrWhiteSpace(network) ? null : Of(boot, network);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }
}
