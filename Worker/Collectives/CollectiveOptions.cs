namespace Pretrain.Worker.Collectives;

/// <summary>One member of a generation's ring, as the coordinator assigned it.</summary>
/// <param name="Rank">0-based rank; the ring order is rank order.</param>
/// <param name="WorkerId">The worker's stable id, for error messages and logs.</param>
/// <param name="Host">Host or IP address of the peer's <see cref="DataPlaneListener"/>.</param>
/// <param name="Port">Bound port of the peer's <see cref="DataPlaneListener"/>.</param>
public sealed record RingPeer(int Rank, string WorkerId, string Host, int Port)
{
    public override string ToString() => $"{WorkerId} (rank {Rank}, {Host}:{Port})";
}

/// <summary>Tuning and failure bounds of a <see cref="RingCommunicator"/>.</summary>
public sealed record CollectiveOptions
{
    /// <summary>
    /// Longest time any single wait may make no progress (connect, handshake, a send or a receive)
    /// before the collective fails naming the peer it waited for. A whole call may take longer as long
    /// as bytes keep moving: 64 MiB over a slow link is not a failure.
    /// </summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Pipeline segment in bytes (multiple of 4). Sending segment k+1 overlaps receiving and reducing
    /// segment k. Measured on 2-core loopback, 2 ranks, busBw at 1 / 16 MiB (noisy, shared machine):
    /// 64 KiB 0.50 / 0.48 GB/s, 128 KiB 0.87 / 0.78, 256 KiB 1.39 / 0.51-0.81, 512 KiB 1.16 / 0.49-1.1,
    /// 1 MiB 0.49 / 0.77. Small segments pay per-await overhead; a segment as large as a chunk loses the overlap.
    /// </summary>
    public int SegmentBytes { get; init; } = 512 << 10;

    /// <summary>
    /// SO_SNDBUF / SO_RCVBUF per ring socket; 0 keeps the OS default (Linux autotunes up to
    /// net.ipv4.tcp_rmem max, 6 MiB on Debian 12).
    /// </summary>
    public int SocketBufferBytes { get; init; }

    /// <summary>
    /// How long a rank that saw its previous peer's connection drop waits for a failure notice
    /// naming the root cause (the notice travels backwards round the ring, ~1 ms per hop on a LAN)
    /// before blaming that neighbour. Without it a survivor could blame a survivor that failed first.
    /// </summary>
    public TimeSpan FailureGrace { get; init; } = TimeSpan.FromMilliseconds(250);

    /// <summary>
    /// Slow is not dead: when a call has moved no byte for <see cref="Timeout"/> but this says every peer process
    /// is alive (the control plane's failure detector still reaches them all), the call keeps waiting — a rank
    /// writing a large checkpoint or running a long evaluation is slow, not lost — up to
    /// <see cref="SlowPeerLimit"/> times the timeout, so a deadlock still fails. Null: silence for the timeout fails.
    /// </summary>
    public Func<bool>? PeersAlive { get; init; }

    /// <summary>
    /// Mutual TLS on every ring connection with these certificates (the job's <c>tls_data_plane</c>); null = plain TCP.
    /// Costs a TLS handshake per connection and AES-GCM on every byte (docs/BENCHMARKS.md, TLS data plane).
    /// </summary>
    public DataPlaneTlsOptions? Tls { get; init; }

    /// <summary>How many timeouts a call may wait on peers that <see cref="PeersAlive"/> says are alive.</summary>
    public int SlowPeerLimit { get; init; } = 10;

    internal void Validate()
    {
        if (Timeout <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(Timeout), Timeout, "must be positive");
        if (SegmentBytes < 4096 || SegmentBytes % 8 != 0)
            throw new ArgumentOutOfRangeException(nameof(SegmentBytes), SegmentBytes, "must be a multiple of 8 (an int64 element) and at least 4096");
        if (SocketBufferBytes < 0) throw new ArgumentOutOfRangeException(nameof(SocketBufferBytes), SocketBufferBytes, "must be >= 0");
    }
}
