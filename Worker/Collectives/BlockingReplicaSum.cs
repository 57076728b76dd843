using Pretrain.Worker.Models.Layers;
using Pretrain.Worker.Training;
using static TorchSharp.torch;

namespace Pretrain.Worker.Collectives;

/// <summary>
/// <see cref="IReplicaSum"/> over the data plane's all-reduce, for layers that must communicate in the
/// middle of a forward or backward pass (global batch norm), where there is no await. The training loop
/// runs on its own single thread (<see cref="TrainingThread"/>), so blocking it is safe; the collective
/// itself runs on the thread pool so none of its continuations need that thread. Every wait is bounded:
/// the collective fails by its own timeout, and this waits at most <paramref name="timeout"/> beyond.
/// </summary>
public sealed class BlockingReplicaSum(ICollectives collectives, TimeSpan timeout) : IReplicaSum
{
    private Exception? _failure;

    public void SumInPlace(Tensor data)
    {
        if (_failure is not null)
            throw Wrap("an earlier all-reduce failed", _failure);
        if (collectives.WorldSize == 1)
            return;
        var memory = new NativeMemory<float>(data).Memory;
        var sum = Task.Run(() => collectives.AllReduceSumAsync(memory));
        bool done;
        try
        {
            done = sum.Wait(timeout);
        }
        catch (AggregateException error)
        {
            Fail(error.GetBaseException());
            throw Wrap("an all-reduce failed", error.GetBaseException());
        }
        if (!done)
        {
            // The collective's own timeout should have fired long before; the worker is not usable after this.
            Fail(new TimeoutException($"the all-reduce of {data.numel()} floats did not finish within {timeout.TotalSeconds:0.#} s"));
            ThrowIfFailed();
        }
    }

    public void Fail(Exception error) => _failure ??= error;

    public void ThrowIfFailed()
    {
        if (_failure is not null)
            throw Wrap("an all-reduce in the backward pass failed", _failure);
    }

    /// <summary>A <see cref="CollectiveException"/> that keeps the failed peer of <paramref name="error"/> when it names one.</summary>
    private CollectiveException Wrap(string what, Exception error) => error is CollectiveException peer
        ? new CollectiveException($"global batch norm: {what}: {peer.Message}", peer.Generation, peer.PeerRank, peer.PeerName, peer)
        : new CollectiveException($"global batch norm: {what}: {error.Message}", collectives.Generation, -1, "unknown", error);
}
