using Microsoft.Extensions.Logging;
using static TorchSharp.torch;

namespace Pretrain.Worker.Collectives;

/// <summary>
/// <see cref="ICommunicator"/> over a host-memory transport (<see cref="ICollectives"/>: the TCP ring, or one
/// rank alone): a CPU tensor's storage is handed to the transport in place, no copy. Calls started before
/// the previous one finished wait their turn, so callers may start several and wait later (the ring runs
/// one call at a time, in the same order on every rank).
/// </summary>
public sealed class HostCommunicator(ICollectives transport) : ICommunicator
{
    private readonly Lock _gate = new();
    private Task _tail = Task.CompletedTask;

    public long Generation => transport.Generation;
    public int Rank => transport.Rank;
    public int WorldSize => transport.WorldSize;

    /// <summary>The host-memory transport underneath (tests, benchmarks).</summary>
    public ICollectives Transport => transport;

    public CollectiveHandle AllReduceSum(Tensor data, CancellationToken ct = default)
    {
        if (data.dtype == ScalarType.Int64)
        {
            var integers = new NativeMemory<long>(data).Memory;
            return Enqueue(() => transport.AllReduceSumAsync(integers, ct));
        }
        var memory = new NativeMemory<float>(Float32(data, nameof(data))).Memory;
        return Enqueue(() => transport.AllReduceSumAsync(memory, ct));
    }

    public CollectiveHandle AllGather(Tensor local, Tensor result, CancellationToken ct = default)
    {
        var from = new NativeMemory<float>(Float32(local, nameof(local))).Memory;
        var into = new NativeMemory<float>(Float32(result, nameof(result))).Memory;
        return Enqueue(() => transport.AllGatherAsync(from, into, ct));
    }

    public CollectiveHandle Broadcast(Tensor data, int root, CancellationToken ct = default)
    {
        var memory = new NativeMemory<byte>(data).Memory;
        return Enqueue(() => transport.BroadcastAsync(memory, root, ct));
    }

    private static Tensor Float32(Tensor t, string name) => t.dtype == ScalarType.Float32
        ? t
        : throw new ArgumentException($"{name}: collectives reduce float32 or int64 and gather float32 tensors, got {t.dtype}", name);

    private CollectiveHandle Enqueue(Func<Task> start)
    {
        if (WorldSize == 1) return new CollectiveHandle(start());   // the identity, at once
        lock (_gate)
        {
            var previous = _tail;
            // On the thread pool, never inline: the caller may be the training thread, whose synchronization
            // context the transport's awaits would otherwise capture, and a layer that blocks on the handle
            // (global batch norm) would then wait on continuations queued behind itself.
            var next = Task.Run(() => After(previous, start));
            _tail = next;
            return new CollectiveHandle(next);
        }
    }

    private static async Task After(Task previous, Func<Task> start)
    {
        // The previous call's failure belongs to its own caller; a failed transport fails this call too, naming the peer.
        try { await previous.ConfigureAwait(false); } catch (Exception) { }
        await start().ConfigureAwait(false);
    }

    public ValueTask DisposeAsync() => transport.DisposeAsync();
}

/// <summary>Each generation's TCP ring on this worker's data-plane listener, over TLS with <paramref name="tls"/> when the job asks.</summary>
public sealed class TcpRingFactory(DataPlaneListener listener, CollectiveOptions options, ILogger log, DataPlaneTlsOptions? tls = null) : ICommunicatorFactory
{
    public async Task<ICommunicator> ConnectAsync(long generation, int rank, IReadOnlyList<RingPeer> peers, byte[] key, bool encrypt, CancellationToken ct)
    {
        var ringOptions = encrypt
            ? options with { Tls = tls ?? throw new InvalidOperationException("the job's data plane is TLS, and this worker has no certificates (--tls-cert, --tls-ca)") }
            : options;
        var ring = new RingCommunicator(listener, generation, rank, peers, key, ringOptions, log);
        try
        {
            await ring.ConnectAsync(ct);
            return new HostCommunicator(ring);
        }
        catch
        {
            await ring.DisposeAsync();
            throw;
        }
    }
}
