using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Pretrain.Worker.Telemetry;
using static TorchSharp.torch;

namespace Pretrain.Worker.Collectives;

/// <summary>
/// <see cref="ICommunicator"/> over a host-memory transport (<see cref="ICollectives"/>: the ring, or one
/// rank alone): a CPU tensor's storage is handed to the transport in place, no copy. Calls started before
/// the previous one finished wait their turn on the communicator's collectives thread, so callers may start
/// several and wait later (the ring runs one call at a time, in the same order on every rank). With <paramref name="trace"/> (<c>--trace</c>) each call is
/// timed from its start on the transport to its end, with its kind and payload; without, that costs a null check.
/// </summary>
public sealed class HostCommunicator(ICollectives transport, TraceRecorder? trace = null) : ICommunicator
{
    private readonly Lock _gate = new();

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
        var call = new Call(start, kind, bytes, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));
        lock (_gate)
        {
            _calls.Enqueue(call);
            if (!_threadRunning)
            {
                _threadRunning = true;
                new Thread(RunCalls) { IsBackground = true, Name = $"collectives {Generation}.{Rank}" }.Start();
            }
        }
        _queued.Release();
        return new CollectiveHandle(call.Done.Task);
    }

    private sealed record Call(Func<Task> Start, TraceKind Kind, long Bytes, TaskCompletionSource Done);

    // Calls run one at a time, in order, on a thread of this communicator's own, as Horovod's background thread runs them:
    // never on the caller's, which may be the training thread, whose synchronization context the transport's awaits would
    // otherwise capture (a layer that blocks on the handle, global batch norm, would then wait on continuations queued
    // behind itself); and never on the thread pool, which a call would hold for its whole length. The ring runs a call's
    // loop right on this thread (RingCommunicator.RunCallsOnThisThread): no hand-off beyond the caller's to here and back.
    private readonly Queue<Call> _calls = new();
    private readonly SemaphoreSlim _queued = new(0);
    private bool _threadRunning, _disposed;

    /// <summary>How long the thread waits for another call before it ends (a communicator that is no longer used, or is disposed).</summary>
    private static readonly TimeSpan IdleExit = TimeSpan.FromSeconds(10);

    private void RunCalls()
    {
        RingCommunicator.RunCallsOnThisThread();
        while (true)
        {
            bool signalled = _queued.Wait(Volatile.Read(ref _disposed) ? TimeSpan.Zero : IdleExit);
            Call? call = null;
            lock (_gate)
            {
                // A permit may outlive its call (taken by a wait that had timed out) and wakes this loop once more for nothing.
                if (_calls.Count > 0) call = _calls.Dequeue();
                else if (!signalled || _disposed)
                {
                    _threadRunning = false;
                    return;
                }
            }
            if (call != null) Run(call);
        }
    }

    private void Run(Call call)
    {
        // Timed from its start on the wire, not from Enqueue: the wait behind earlier calls is theirs.
        var began = trace is null ? 0 : Stopwatch.GetTimestamp();
        Exception? error = null;
        // Blocks only where the transport does not finish on this thread (TLS links, a ring of shared memory and TCP, or the
        // loops turned off): their continuations run on the thread pool, never here.
        try { call.Start().GetAwaiter().GetResult(); }
        catch (Exception e) { error = e; }
        trace?.Collective(call.Kind, began, Stopwatch.GetTimestamp(), call.Bytes, Generation, Rank, failed: error != null);
        // The call's failure belongs to its own caller; a failed transport fails the calls after it too, naming the peer.
        if (error is null) call.Done.SetResult();
        else if (error is OperationCanceledException canceled) call.Done.SetCanceled(canceled.CancellationToken);
        else call.Done.SetException(error);
    }

    public ValueTask DisposeAsync()
    {
        // The thread ends once the calls already queued have (the transport fails them fast once disposed).
        Volatile.Write(ref _disposed, true);
        _queued.Release();
        return transport.DisposeAsync();
    }
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
