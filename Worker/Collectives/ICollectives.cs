namespace Pretrain.Worker.Collectives;

/// <summary>
/// The data plane's collectives for one rendezvous generation. Tensors cross the network only here,
/// worker to worker (brief, principle 1). Every call carries the communicator's generation on the wire
/// and fails within the configured timeout with a <see cref="CollectiveException"/> naming the peer
/// when a peer dies or stalls — it never waits forever.
/// </summary>
public interface ICollectives : IAsyncDisposable
{
    long Generation { get; }
    int Rank { get; }
    int WorldSize { get; }

    /// <summary>In-place elementwise sum over all ranks; every rank ends with the same values.</summary>
    Task AllReduceSumAsync(Memory<float> data, CancellationToken ct = default);

    /// <summary>In-place elementwise sum of 64-bit integers over all ranks: exact, so the same bits whatever the order (reproducible runs).</summary>
    Task AllReduceSumAsync(Memory<long> data, CancellationToken ct = default);

    /// <summary>
    /// Concatenates every rank's <paramref name="local"/> (equal lengths) in rank order into
    /// <paramref name="result"/>, whose length is <c>local.Length * WorldSize</c>.
    /// </summary>
    Task AllGatherAsync(ReadOnlyMemory<float> local, Memory<float> result, CancellationToken ct = default);

    /// <summary>Copies <paramref name="data"/> of rank <paramref name="root"/> to every other rank.</summary>
    Task BroadcastAsync(Memory<byte> data, int root, CancellationToken ct = default);
}

/// <summary>A collective failed: a peer closed its connection, sent garbage, or did not answer in time.</summary>
public sealed class CollectiveException(string message, long generation, int peerRank, string peerName, Exception? inner = null)
    : Exception(message, inner)
{
    public long Generation { get; } = generation;
    /// <summary>The rank of the peer that failed, or -1 when it is not known.</summary>
    public int PeerRank { get; } = peerRank;
    /// <summary>The peer's worker id and endpoint, for logs and the coordinator's journal.</summary>
    public string PeerName { get; } = peerName;

    /// <summary>The blame rests on silence (a timeout), not on a closed connection: the peer may be alive and waiting too.</summary>
    public bool PeerTimedOut { get; init; }
}
