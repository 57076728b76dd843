using System.Runtime.InteropServices;
using Pretrain.Worker.Collectives;
using static TorchSharp.torch;

namespace Pretrain.Worker.Training.Reproducible;

/// <summary>
/// Batch-norm running statistics of a network whose batch norm is per micro-shard (MoCo, SimCLR without
/// global BN) in a reproducible run. Left alone, the buffers would move once per shard in the order a rank
/// happens to hold them, so they would depend on the world size. Instead every shard's forward starts from
/// the step's values (<see cref="Enter"/>), what it leaves is kept (<see cref="Leave"/>), and
/// <see cref="FinishAsync"/> sets each float buffer to the mean over all shards, in shard order, of what the
/// shards left: (1 − m)·r + m·mean(shard statistics), one update per step as one large batch would make. Integer
/// buffers (<c>num_batches_tracked</c>) move by one per forward from the same start, so every shard leaves the
/// same value and it is kept as is.
/// </summary>
public sealed class ShardStatistics : IDisposable
{
    private readonly Tensor[] _floats, _integers;
    private readonly Tensor[] _start;           // the step's values, restored before each shard
    private readonly long _width;               // floats of all float buffers together
    private readonly List<Tensor> _left = [];   // per local shard: (width) floats

    public ShardStatistics(IEnumerable<Tensor> buffers)
    {
        var all = buffers.ToArray();
        _floats = all.Where(b => b.dtype == ScalarType.Float32).ToArray();
        _integers = all.Where(b => b.dtype != ScalarType.Float32).ToArray();
        _start = All.Select(b => empty_like(b).DetachFromDisposeScope()).ToArray();   // in the order of All
        _width = _floats.Sum(b => b.numel());
    }

    private IEnumerable<Tensor> All => _floats.Concat(_integers);

    /// <summary>Remembers the buffers as the step found them.</summary>
    public void Begin(int localShards)
    {
        using var noGrad = no_grad();
        foreach (var (buffer, start) in All.Zip(_start)) start.copy_(buffer);
        while (_left.Count < localShards) _left.Add(zeros(Math.Max(1, _width), dtype: float32).DetachFromDisposeScope());
    }

    /// <summary>
    /// Before a shard's forward: the buffers as the step found them. A raw copy, which leaves the tensors'
    /// version counters alone: an earlier shard's graph may still await its backward (SimCLR runs every
    /// forward first), and native batch norm saves the running statistics in it — a training-mode backward
    /// never reads them, but a <c>copy_</c> would bump their version and make that backward refuse.
    /// </summary>
    public void Enter()
    {
        foreach (var (buffer, start) in All.Zip(_start)) start.bytes.CopyTo(buffer.bytes);
    }

    /// <summary>After local shard <paramref name="local"/>'s forward: keeps what it left.</summary>
    public void Leave(int local)
    {
        using var noGrad = no_grad();
        long offset = 0;
        foreach (var buffer in _floats)
        {
            using var view = _left[local].narrow(0, offset, buffer.numel());
            view.copy_(buffer.reshape(-1));
            offset += buffer.numel();
        }
    }

    /// <summary>Sets the float buffers to the shard-order mean over all shards of every rank (one all-gather).</summary>
    public async Task FinishAsync(ICommunicator group, ShardPlan plan, CancellationToken ct)
    {
        if (_width == 0) return;
        int world = group.WorldSize, most = ShardPlan.MostPerRank(plan.Shards, world);
        using var mine = zeros(most * _width, dtype: float32);
        for (var i = 0; i < plan.Count; i++)
        {
            using var row = mine.narrow(0, i * _width, _width);
            row.copy_(_left[i].narrow(0, 0, _width));
        }
        using var all = empty(world * most * _width, dtype: float32);
        if (world > 1) await group.AllGather(mine, all, ct);
        else all.copy_(mine);
        Average(all, plan.Shards, world);
    }

    private void Average(Tensor all, int shards, int world)
    {
        var mean = new double[_width];
        ShardPlan.SumInShardOrder(MemoryMarshal.Cast<byte, float>(all.bytes), shards, world, (int)_width, mean);
        using var noGrad = no_grad();
        long offset = 0;
        foreach (var buffer in _floats)
        {
            var into = MemoryMarshal.Cast<byte, float>(buffer.bytes);
            for (var k = 0; k < into.Length; k++) into[k] = (float)(mean[offset + k] / shards);
            offset += into.Length;
        }
    }

    public void Dispose()
    {
        foreach (var t in _start) t.Dispose();
        foreach (var t in _left) t.Dispose();
    }
}
