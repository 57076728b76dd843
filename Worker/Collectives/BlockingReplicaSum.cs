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
/// <para>
/// A model outlives generations, so the replicas it sums over are lent per step: <see cref="Use"/> binds
/// the generation's collectives for the duration of one forward and backward and clears the failure of
/// the previous step.
/// </para>
/// </summary>
public sealed class BlockingReplicaSum(TimeSpan timeout) : IReplicaSum
{
    private ICommunicator? _group;
    private IReplicaSum? _shards;
    private Exception? _failure;

    /// <summary>A sum bound to <paramref name="collectives"/> for good (tests, single-generation use).</summary>
    public BlockingReplicaSum(ICommunicator collectives, TimeSpan timeout) : this(timeout) => _group = collectives;

    /// <summary>Binds the replicas of this step; dispose the scope when the step's backward is done.</summary>
    public IDisposable Use(ICommunicator group)
    {
        _group = group;
        _failure = null;
        return new Binding(this);
    }

    /// <summary>
    /// Binds a reproducible step's sum over micro-shards instead (<c>ShardReplicaSum</c>): until the scope is
    /// disposed, every call goes to <paramref name="shards"/>.
    /// </summary>
    public IDisposable UseShards(IReplicaSum shards)
    {
        _shards = shards;
        return new Binding(this);
    }

    public bool UpdatesStatistics => _shards?.UpdatesStatistics ?? true;

    public bool Alone => _shards is null && _group is { WorldSize: 1 };

    public int Replica => _shards?.Replica ?? Bound.Rank;

    public int Replicas => _shards?.Replicas ?? Bound.WorldSize;

    private ICommunicator Bound => _group ?? throw new InvalidOperationException("global batch norm in training mode outside a step: no replicas are bound");

    public void SumInPlace(Tensor data)
    {
        if (_shards is not null)
        {
            _shards.SumInPlace(data);
            return;
        }
        if (_failure is not null)
            throw Wrap("an earlier all-reduce failed", _failure);
        var group = Bound;
        if (group.WorldSize == 1)
            return;
        var sum = group.AllReduceSum(data);
        bool done;
        try
        {
            done = sum.Wait(timeout);
        }
        catch (Exception error)
        {
            Fail(error);
            throw Wrap("an all-reduce failed", error);
        }
        if (!done)
        {
            // The collective's own timeout should have fired long before; the communicator is not usable after this.
            Fail(new TimeoutException($"the all-reduce of {data.numel()} floats did not finish within {timeout.TotalSeconds:0.#} s"));
            ThrowIfFailed();
        }
    }

    public void Fail(Exception error)
    {
        if (_shards is not null) _shards.Fail(error);
        else _failure ??= error;
    }

    public void ThrowIfFailed()
    {
        _shards?.ThrowIfFailed();
        if (_failure is not null)
            throw Wrap("an all-reduce in the backward pass failed", _failure);
    }

    /// <summary>A <see cref="CollectiveException"/> that keeps the failed peer of <paramref name="error"/> when it names one.</summary>
    private CollectiveException Wrap(string what, Exception error) => error is CollectiveException peer
        ? new CollectiveException($"global batch norm: {what}: {peer.Message}", peer.Generation, peer.PeerRank, peer.PeerName, peer)
        : new CollectiveException($"global batch norm: {what}: {error.Message}", _group?.Generation ?? 0, -1, "unknown", error);

    private sealed class Binding(BlockingReplicaSum owner) : IDisposable
    {
        public void Dispose() => (owner._group, owner._shards) = (null, null);
    }
}
