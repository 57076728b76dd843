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

    /// <summary>
    /// Auto: a link to a rank on the same host (<see cref="HostIdentity"/>) carries its data through shared memory
    /// (<see cref="SharedRing"/>) unless the ring is TLS — the user asked for encryption, which memory would bypass. Tcp:
    /// every link is TCP. Both ends must allow shared memory; the TCP connection, its handshake, timeouts and failure
    /// notices are the same either way.
    /// </summary>
    public TransportPolicy Transport { get; init; } = TransportPolicy.Auto;

    /// <summary>
    /// Data bytes of each shared-memory ring (a power of two, 64 KiB to 1 GiB), one file in
    /// <see cref="SharedMemoryDirectory"/> per link while it connects. 4 MiB lets the sender run 32 segments ahead and
    /// fits a shared L3 cache; a 64 MiB allreduce over 2 ranks then waits for space only when the consumer falls behind.
    /// </summary>
    public int SharedMemoryRingBytes { get; init; } = 4 << 20;

    /// <summary>
    /// Pipeline segment (multiple of 8, at least 4096) of a rank whose two links are both shared memory, at most
    /// <see cref="SegmentBytes"/>. Smaller than TCP's: a shared-memory segment costs no system call, so finer segments
    /// overlap forwarding with receiving sooner (at 1 MiB over 2 ranks, 4 segments per chunk instead of 1).
    /// </summary>
    public int SharedMemorySegmentBytes { get; init; } = 128 << 10;

    /// <summary>
    /// How long a shared-memory wait spins (yielding the core after a few rounds) before it sleeps on a doorbell, a byte
    /// over the TCP connection (tens of microseconds to wake). 20 µs covers the gap between two 64 KiB publications of a
    /// busy peer; a longer spin only burns a core another rank on a small host needs. 0: never spin.
    /// </summary>
    public TimeSpan SharedMemorySpin { get; init; } = TimeSpan.FromMicroseconds(20);

    /// <summary>
    /// Plain TCP links (Linux) run each call as one poll(2) loop on the ring's own thread, with their sockets out of .NET's
    /// socket engine (<c>RingCommunicator.Pump.cs</c>; docs/BENCHMARKS.md, Allreduce). <c>PRETRAIN_TCP_PUMP=0</c> turns it
    /// off (the async send and receive loops, as on other systems): a way out should a kernel or runtime misbehave with it.
    /// </summary>
    public bool TcpPump { get; init; } = Environment.GetEnvironmentVariable("PRETRAIN_TCP_PUMP") != "0";

    /// <summary>
    /// Shared-memory links (Linux) run each call as one loop too, over both mappings, spinning briefly and then sleeping in
    /// poll(2) on the doorbells (<c>RingCommunicator.SharedLoop.cs</c>) instead of one async loop per direction.
    /// <c>PRETRAIN_SHM_PUMP=0</c> turns it off.
    /// </summary>
    public bool SharedMemoryPump { get; init; } = Environment.GetEnvironmentVariable("PRETRAIN_SHM_PUMP") != "0";

    /// <summary>Where the rings' files are made (a tmpfs both ranks see). Each is removed as soon as both ends mapped it.</summary>
    public string SharedMemoryDirectory { get; init; } = "/dev/shm";

    /// <summary>Tests: this rank's host id instead of the process's (<see cref="HostIdentity"/>), so ranks in one process
    /// can play ranks on different hosts. Null: the process's own.</summary>
    internal byte[]? HostIdentityOverride { get; init; }

    internal void Validate()
    {
        if (Timeout <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(Timeout), Timeout, "must be positive");
        if (SegmentBytes < 4096 || SegmentBytes % 8 != 0)
            throw new ArgumentOutOfRangeException(nameof(SegmentBytes), SegmentBytes, "must be a multiple of 8 (an int64 element) and at least 4096");
        if (SocketBufferBytes < 0) throw new ArgumentOutOfRangeException(nameof(SocketBufferBytes), SocketBufferBytes, "must be >= 0");
        if (!SharedRing.IsValidCapacity(SharedMemoryRingBytes))
            throw new ArgumentOutOfRangeException(nameof(SharedMemoryRingBytes), SharedMemoryRingBytes, $"must be a power of two from {SharedRing.MinCapacity} to {SharedRing.MaxCapacity}");
        if (SharedMemorySegmentBytes < 4096 || SharedMemorySegmentBytes % 8 != 0)
            throw new ArgumentOutOfRangeException(nameof(SharedMemorySegmentBytes), SharedMemorySegmentBytes, "must be a multiple of 8 (an int64 element) and at least 4096");
        if (SharedMemorySpin < TimeSpan.Zero || SharedMemorySpin > TimeSpan.FromSeconds(1))
            throw new ArgumentOutOfRangeException(nameof(SharedMemorySpin), SharedMemorySpin, "must be from 0 to 1 s");
        if (HostIdentityOverride is { Length: not HostIdentity.Size })
            throw new ArgumentException($"a host id is {HostIdentity.Size} bytes", nameof(HostIdentityOverride));
    }
}
