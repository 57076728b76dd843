using Pretrain.Worker.Collectives;
using Pretrain.Worker.Training;
using Pretrain.Worker.Training.Reproducible;
using TorchSharp;
using static TorchSharp.torch;

namespace Pretrain.Worker.Methods.Bootstrap;

/// <summary>BYOL's reproducible step (<c>reproducible.enabled</c>): each micro-shard on its own, whichever rank holds it.</summary>
public sealed partial class ByolMethod
{
    /// <summary>
    /// A reproducible step. BYOL's loss couples no samples, so a shard's loss and gradient depend on its own
    /// samples — and on batch norm, the one thing that spans shards. Global batch norm needs every shard at each
    /// layer at once: a rank's shards run on concurrent threads whose statistics are summed over all shards in
    /// shard order (<see cref="ShardReplicaSum"/>), first the target network's forward of every shard, then each
    /// shard's online forward, loss and <c>autograd.grad</c> (so the threads never add into the same <c>.grad</c>).
    /// Per-shard batch norm runs the shards one after another, each from the step's running statistics, which then
    /// move once by the shard-order mean (<see cref="ShardStatistics"/>). Either way nothing depends on the world size.
    /// </summary>
    public async Task ForwardBackwardShardsAsync(ShardedBatch batch, ICommunicator group, IShardGradients gradients, CancellationToken ct)
    {
        var plan = batch.Plan;
        using var scope = NewDisposeScope();
        var views = new Tensor[plan.Count];
        for (var i = 0; i < plan.Count; i++)
        {
            var ids = batch.IdsOf(plan.First + i).Span;
            using var images = _train.Load(ids);
            views[i] = _augmenter.BothViews(images, ids, batch.Step); // (2b, C, H, W)
        }
        _context.Phases.Lap(StepPhase.Data);
        if (_options.GlobalBatchNorm)
            GlobalNormShards(batch, group, views, gradients);
        else
            await ShardNormShardsAsync(batch, group, views, gradients, ct);
        _context.Phases.Lap(StepPhase.Backward);
    }

    /// <summary>Global batch norm: the shards of this rank on concurrent threads that meet at every BN sum.</summary>
    private void GlobalNormShards(ShardedBatch batch, ICommunicator group, Tensor[] views, IShardGradients gradients)
    {
        var shards = new ShardReplicaSum(group, batch.Plan, _context.CollectiveTimeout);
        using var bound = _replicas.UseShards(shards);
        var targets = shards.Run(i =>
        {
            using var shardScope = NewDisposeScope();                                    // a shard thread's own: scopes are per thread
            return TargetProjections(views[i]).DetachFromDisposeScope();                  // (2b, d), no graph
        });
        try
        {
            _context.Phases.Lap(StepPhase.Forward);
            var parameters = Parameters.Select(p => (Tensor)p.Parameter).ToArray();
            shards.Run(i =>
            {
                using var shardScope = NewDisposeScope();
                var shard = batch.Shard(i);
                using var globalCount = ((double)shard.GlobalCount).ToScalar();   // explicit: see GlobalBatchNorm2d
                var loss = ByolLoss.Symmetric(Predictions(views[i]), targets[i]).sum().div(globalCount);
                // TorchSharp 0.107's THSAutograd_grad does not catch libtorch errors (SimClrMethod says more): every
                // parameter is used by this graph (encoder, projector, predictor), so none is reported unused.
                var grads = autograd.grad([loss], parameters, [ones_like(loss)]);
                gradients.Take(shard.Shard, [.. grads], loss.item<float>());
                return true;
            });
        }
        finally
        {
            foreach (var target in targets) target.Dispose();
        }
    }

    /// <summary>Per-shard batch norm: the shards of this rank one after another, each from the step's running statistics.</summary>
    private async Task ShardNormShardsAsync(ShardedBatch batch, ICommunicator group, Tensor[] views, IShardGradients gradients, CancellationToken ct)
    {
        var plan = batch.Plan;
        var (onlineStatistics, targetStatistics) = (_onlineStatistics!, _targetStatistics!);
        targetStatistics.Begin(plan.Count);
        onlineStatistics.Begin(plan.Count);
        for (var i = 0; i < plan.Count; i++)
        {
            using var shardScope = NewDisposeScope();
            var shard = batch.Shard(i);
            targetStatistics.Enter();
            var targets = TargetProjections(views[i]);                                    // (2b, d), no graph
            targetStatistics.Leave(i);
            onlineStatistics.Enter();
            var predictions = Predictions(views[i]);                                      // (2b, d)
            onlineStatistics.Leave(i);
            using var globalCount = ((double)shard.GlobalCount).ToScalar();       // explicit: see GlobalBatchNorm2d
            var loss = ByolLoss.Symmetric(predictions, targets).sum().div(globalCount);
            loss.backward();
            gradients.TakeFromGrad(shard.Shard, loss.item<float>());
        }
        await targetStatistics.FinishAsync(group, plan, ct);
        await onlineStatistics.FinishAsync(group, plan, ct);
    }
}
