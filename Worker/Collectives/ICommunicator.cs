using System.Runtime.CompilerServices;
using static TorchSharp.torch;

namespace Pretrain.Worker.Collectives;

/// <summary>
/// One generation's collectives over tensors, what methods, models and the loop see of the data plane.
/// Every call starts the collective and returns a handle to wait on; calls run in the order they were
/// started, the same order on every rank. A backend decides where the bytes go: the ring on CPU
/// (<see cref="HostCommunicator"/> over <see cref="RingCommunicator"/>: TCP between hosts, shared memory within one)
/// today; NCCL on CUDA can slot in behind the same interface without touching methods or models. Made per
/// generation by an <see cref="ICommunicatorFactory"/>: nothing that outlives a generation may keep one.
/// </summary>
public interface ICommunicator : IAsyncDisposable
{
    long Generation { get; }
    int Rank { get; }
    int WorldSize { get; }

    /// <summary>In-place elementwise sum of a contiguous float32 or int64 tensor over all ranks (int64: exact, any order).</summary>
    CollectiveHandle AllReduceSum(Tensor data, CancellationToken ct = default);

    /// <summary>Every rank's contiguous float32 <paramref name="local"/> (equal sizes), in rank order, into <paramref name="result"/> (WorldSize × local).</summary>
    CollectiveHandle AllGather(Tensor local, Tensor result, CancellationToken ct = default);

    /// <summary>Rank <paramref name="root"/>'s contiguous <paramref name="data"/> (any dtype) to every other rank, in place.</summary>
    CollectiveHandle Broadcast(Tensor data, int root, CancellationToken ct = default);
}

/// <summary>A collective in flight: await it, or wait for it bounded; a failure surfaces as the <see cref="CollectiveException"/> naming the peer.</summary>
public readonly struct CollectiveHandle(Task task)
{
    private readonly Task _task = task ?? Task.CompletedTask;

    public static CollectiveHandle Done => new(Task.CompletedTask);

    public bool IsCompleted => _task.IsCompleted;

    public Task AsTask() => _task;

    public TaskAwaiter GetAwaiter() => _task.GetAwaiter();

    /// <summary>Blocks at most <paramref name="timeout"/>; false when the collective has not finished by then. Rethrows its failure.</summary>
    public bool Wait(TimeSpan timeout)
    {
        try { return _task.Wait(timeout); }
        catch (AggregateException e) when (e.InnerExceptions.Count == 1) { throw e.InnerException!; }
    }
}

/// <summary>Builds the communicator of each generation from its ranks (the ring today).</summary>
public interface ICommunicatorFactory
{
    /// <summary>Connects rank <paramref name="rank"/> of generation <paramref name="generation"/> to its peers, every
    /// connection proving <paramref name="key"/> (the generation's data-plane key); bounded by the backend's timeout.</summary>
    /// <param name="tls">Encrypt the ring (mutual TLS); the factory holds this node's certificates.</param>
    Task<ICommunicator> ConnectAsync(long generation, int rank, IReadOnlyList<RingPeer> peers, byte[] key, bool tls, CancellationToken ct);
}
