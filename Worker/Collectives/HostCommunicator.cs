using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Pretrain.Worker.Telemetry;
using static TorchSharp.torch;

namespace Pretrain.Worker.Collectives;

/// <summary>
/// <see cref="ICommunicator"/> over a host-memory transport (<see cref="ICollectives"/>: the ring, or one
/// rank alone): a CPU tensor's storage is handed to the transport in place, no copy. Calls started before
/// the previous one finished wait their turn, so callers may start several and wait later (the ring runs
/// one call at a time, in the same order on every rank). With <paramref name="trace"/> (<c>--trace</c>) each call is
/// timed from its start on the transport to its end, with its kind and payload; without, that costs a null check.
/// </summary>
public sealed class HostCommunicator(ICollectives transport, TraceRecorder? trace = null) : ICommunicator
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
            return Enqueue(() => transport.AllReduceSumAsync(integers, ct), TraceKind.AllReduceCall, (long)integers.Length * sizeof(long));
        }
        var memory = new NativeMemory<float>(Float32(data, nameof(data))).Memory;
        return Enqueue(() => transport.AllReduceSumAsync(memory, ct), TraceKind.AllReduceCall, (long)memory.Length * sizeof(float));
    }

    public CollectiveHandle AllGather(Tensor local, Tensor result, CancellationToken ct = default)
    {
        var from = new NativeMemory<float>(Float32(local, nameof(local))).Memory;
        var into = new NativeMemory<float>(Float32(result, nameof(result))).Memory;
        return Enqueue(() => transport.AllGatherAsync(from, into, ct), TraceKind.AllGatherCall, (long)into.Length * sizeof(float));   // the gathered size, as nccl-tests counts it
    }

    public CollectiveHandle Broadcast(Tensor data, int root, CancellationToken ct = default)
    {
        var memory = new NativeMemory<byte>(data).Memory;
        return Enqueue(() => transport.BroadcastAsync(memory, root, ct), TraceKind.BroadcastCall, memory.Length);
    }

    private static Tensor Float32(Tensor t, string name) => t.dtype == ScalarType.Float32
        ? t
        : throw new ArgumentException($"{name}: collectives reduce float32 or int64 and gather float32 tensors, got {t.dtype}", name);

    private CollectiveHandle Enqueue(Func<Task> start, TraceKind kind, long bytes)
    {
        if (WorldSize == 1)
        {
            if (trace is null) return new CollectiveHandle(start());   // the identity, at once
            var began = Stopwatch.GetTimestamp();
            var done = start();
            trace.Collective(kind, began, Stopwatch.GetTimestamp(), bytes, Generation, Rank, failed: !done.IsCompletedSuccessfully);
            return new CollectiveHandle(done);
        }
        lock (_gate)
        {
            var previous = _tail;
            // On the thread pool, never inline: the caller may be the training thread, whose synchronization
            // context the transport's awaits would otherwise capture, and a layer that blocks on the handle
            // (global batch norm) would then wait on continuations queued behind itself.
            var next = Task.Run(() => After(previous, start, kind, bytes));
            _tail = next;
            return new CollectiveHandle(next);
        }
    }

    private async Task After(Task previous, Func<Task> start, TraceKind kind, long bytes)
    {
        // The previous call's failure belongs to its own caller; a failed transport fails this call too, naming the peer.
        try { await previous.ConfigureAwait(false); } catch (Exception) { }
        if (trace is null)
        {
            await start().ConfigureAwait(false);
            return;
        }
        // Timed from its start on the wire, not from Enqueue: the wait behind earlier calls is theirs.
        var began = Stopwatch.GetTimestamp();
        var failed = true;
        try
        {
            await start().ConfigureAwait(false);
            failed = false;
        }
        finally
        {
            trace.Collective(kind, began, Stopwatch.GetTimestamp(), bytes, Generation, Rank, failed);
        }
    }

    public ValueTask DisposeAsync() => transport.DisposeAsync();
}

/// <summary>Each generation's ring on this worker's data-plane listener — TCP connections, whose data goes through shared memory to
/// ranks on this host unless <see cref="CollectiveOptions.Transport"/> says TCP — over TLS with <paramref name="tls"/> when the job asks
/// (then always TCP); its collectives timed into <paramref name="trace"/> when given.</summary>
public sealed class RingFactory(DataPlaneListener listener, CollectiveOptions options, ILogger log, DataPlaneTlsOptions? tls = null,
    TraceRecorder? trace = null) : ICommunicatorFactory
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
            return new HostCommunicator(ring, trace);
        }
        catch
        {
            await ring.DisposeAsync();
            throw;
        }
    }
}
