namespace Pretrain.Coordinator.Security;

/// <summary>
/// Which cluster members have proved the job secret. Akka.Cluster admits any node that reaches the seed and speaks
/// its protocol (Akka.NET has no join-time credential check; TLS with mutual authentication is what stops a stranger
/// from associating at all). Without TLS a stranger can become a member — and an unreachable stranger would block the
/// cluster's convergence, so no newcomer could join. So a member that has not proved the secret (a registration
/// whose proof verified) within the grace period is downed. Pure bookkeeping over addresses and a clock.
/// </summary>
public sealed class AdmissionGuard(TimeSpan grace)
{
    private readonly Dictionary<string, long> _unproven = new(StringComparer.Ordinal);
    private readonly HashSet<string> _proven = new(StringComparer.Ordinal);

    public TimeSpan Grace { get; } = grace;

    /// <summary>A member came up at <paramref name="nowMs"/>.</summary>
    public void Up(string address, long nowMs)
    {
        if (!_proven.Contains(address)) _unproven.TryAdd(address, nowMs);
    }

    /// <summary>A registration from <paramref name="address"/> proved the secret.</summary>
    public void Proven(string address)
    {
        _proven.Add(address);
        _unproven.Remove(address);
    }

    /// <summary>A member left or was removed: forgotten (an address is never reused by Akka: new nodes get new uids, and ports differ).</summary>
    public void Removed(string address)
    {
        _proven.Remove(address);
        _unproven.Remove(address);
    }

    public bool IsProven(string address) => _proven.Contains(address);

    /// <summary>Members unproven for longer than the grace period; each is returned once (the caller downs it).</summary>
    public IReadOnlyList<string> Overdue(long nowMs)
    {
        var due = _unproven.Where(kv => nowMs - kv.Value >= (long)Grace.TotalMilliseconds).Select(kv => kv.Key).ToList();
        foreach (var address in due) _unproven.Remove(address);
        return due;
    }
}
