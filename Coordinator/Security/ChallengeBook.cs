using Pretrain.Shared.Security;

namespace Pretrain.Coordinator.Security;

/// <summary>
/// The registration nonces the coordinator has handed out and not yet seen redeemed: each is good once, for the worker
/// id it was issued to, for <see cref="Lifetime"/>. Bounded: at most <see cref="Capacity"/> outstanding, the oldest
/// forgotten first, so a flood of challenge requests costs a fixed amount of memory (a real worker asks again within
/// a second). Pure bookkeeping over a clock the caller passes, tested without an ActorSystem.
/// </summary>
public sealed class ChallengeBook(int capacity = 1024, long lifetimeMs = 30_000)
{
    private readonly Dictionary<string, (string WorkerId, long ExpiresAt)> _open = new(StringComparer.Ordinal);
    private readonly Queue<string> _order = new();

    public int Capacity { get; } = capacity;
    public TimeSpan Lifetime => TimeSpan.FromMilliseconds(lifetimeMs);
    public int Outstanding => _open.Count;

    /// <summary>A fresh nonce for <paramref name="workerId"/>.</summary>
    public byte[] Issue(string workerId, long nowMs)
    {
        while (_open.Count >= Capacity && _order.TryDequeue(out var oldest)) _open.Remove(oldest);
        var nonce = JoinProof.NewNonce();
        var key = Convert.ToHexString(nonce);
        _open[key] = (workerId, nowMs + lifetimeMs);
        _order.Enqueue(key);
        if (_order.Count > 2 * Capacity) Compact();
        return nonce;
    }

    /// <summary>
    /// Redeems <paramref name="nonce"/> for <paramref name="workerId"/>: null when it was issued to that id, unexpired and
    /// unused (it is used now), else why not. Call only after the proof verified, so a forged registration does not burn
    /// a real worker's nonce.
    /// </summary>
    public string? Redeem(byte[]? nonce, string workerId, long nowMs)
    {
        if (nonce is not { Length: JoinProof.NonceBytes }) return "its registration carries no challenge nonce";
        if (!_open.Remove(Convert.ToHexString(nonce), out var issued)) return "its challenge nonce was not issued here or was used already (a replay?)";
        if (issued.WorkerId != workerId) return $"its challenge nonce was issued to {issued.WorkerId}";
        return nowMs > issued.ExpiresAt ? $"its challenge nonce expired ({Lifetime.TotalSeconds:0} s)" : null;
    }

    /// <summary>Drops redeemed nonces from the order queue (they were removed from the map only).</summary>
    private void Compact()
    {
        var live = _order.Where(_open.ContainsKey).ToList();
        _order.Clear();
        foreach (var key in live) _order.Enqueue(key);
    }
}
