using Pretrain.Data.Augmentations;
using Pretrain.Shared.Recipes;
using Pretrain.Worker.Collectives;
using Pretrain.Worker.Models.Layers;
using Pretrain.Worker.Methods.Vision;
using Pretrain.Worker.Models.Vision;
using Pretrain.Worker.Training;
using Pretrain.Worker.Training.Reproducible;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pretrain.Worker.Methods.Contrastive;

/// <summary>
/// SimCLR (Chen et al. 2020): two augmented views of every image, one network (encoder + Linear–BN–ReLU–
/// Linear projection head), and NT-Xent over the <b>global</b> batch — the embeddings of every rank are
/// all-gathered so each view's negatives are the other 2·B − 2 views of the whole global batch, and the
/// gradient is the exact gradient of that global loss (<see cref="DistributedNtXent"/>). Both views pass
/// through the network in one forward, so batch norm sees them together, as in the reference. LARS (or
/// any of our optimizers) with biases and batch-norm parameters excluded from weight decay and adaptation.
/// <para>
/// Batch norm is global by default (<c>simclr.global_batch_norm</c>), as in the reference's cross-replica
/// BN: every BN layer of the encoder and the head normalises with the statistics of all workers' views
/// (<see cref="GlobalBatchNorm2d"/>), so the run computes what one worker with the whole global batch
/// would, and a worker's statistics cannot leak which of the global batch's samples are its own (a shortcut
/// the loss could otherwise use to pick out positives, as the SimCLR paper notes). It costs two small
/// all-reduce per BN layer in the forward and one in the backward. With <c>false</c>, BN is per worker.
/// </para>
/// </summary>
public sealed class SimClrMethod : IRepresentationMethod
{
    private readonly MethodContext _context;
    private readonly ContrastiveOptions _options;
    private readonly ImageBatch _train;
    private readonly ViewAugmenter _augmenter;
    private readonly ViewLoader _views;                  // a micro-batch's two views, made one micro-batch ahead
    private readonly ContrastiveNetwork _network;
    private readonly DistributedNtXent _loss;
    private readonly (string Name, Tensor Tensor)[] _buffers;
    private readonly RepresentationEvaluation _evaluation;
    private readonly BlockingReplicaSum _replicas;
    private readonly ShardStatistics? _shardStatistics;  // reproducible runs with per-shard batch norm

    public SimClrMethod(MethodContext context)
    {
        _context = context;
        var recipe = context.Recipe;
        _options = (ContrastiveOptions)recipe.Options;
        var data = (ImageData)recipe.Data;
        _train = new ImageBatch(data.ImagesPath, "train", context.MaxMicroBatch);
        _augmenter = Augmentations.For(recipe.Augment!, _train.Height, recipe.Seed);
        _views = new ViewLoader(data.ImagesPath, context.MaxMicroBatch, _augmenter, views: 2, ahead: ViewLoader.AheadByDefault);
        _replicas = new BlockingReplicaSum(context.CollectiveTimeout);             // bound to each step's replicas
        Func<long, nn.Module<Tensor, Tensor>>? norm = _options.GlobalBatchNorm
            ? channels => new GlobalBatchNorm2d(channels, _replicas)
            : null;                                                                 // LocalBatchNorm2d: the same names, so checkpoints interchange
        _network = MethodFactory.Seeded(recipe.Seed, () => new ContrastiveNetwork((VisionModel)recipe.Model, _train.Channels, headBatchNorm: true, norm));
        FlopsPerSample = 2 * 3 * ContrastiveNetwork.ForwardFlops((VisionModel)recipe.Model, _train.Channels, _train.Height, _train.Width);
        Parameters = _network.named_parameters().OrderBy(p => p.name, StringComparer.Ordinal).Select(p => (p.name, p.parameter)).ToArray();
        _buffers = _network.named_buffers().OrderBy(b => b.name, StringComparer.Ordinal).Select(b => (b.name, b.buffer)).ToArray();
        _loss = new DistributedNtXent(_options.Temperature);
        _evaluation = new RepresentationEvaluation(context, data);
        if (recipe.IsReproducible && !_options.GlobalBatchNorm)
            _shardStatistics = new ShardStatistics(_buffers.Select(b => b.Tensor));
        _network.train();
    }

    public IReadOnlyList<(string Name, Parameter Parameter)> Parameters { get; }

    /// <summary>The network's marks with per-worker batch norm; none with global batch norm, whose backward all-reduces would queue behind buckets.</summary>
    public IReadOnlyList<GradientMark> GradientMarks => _options.GlobalBatchNorm ? [] : _network.GradientMarks;

    /// <summary>The BN running statistics: part of the replica and of every checkpoint.</summary>
    public IReadOnlyList<(string Name, Tensor Tensor)> State => _buffers;

    /// <summary>Every BN buffer moves in the forward pass.</summary>
    public IReadOnlyList<Tensor> ForwardState => [.. _buffers.Select(b => b.Tensor)];

    public long TrainSamples => _train.Count;
    /// <summary>Two views, each through the network forward and backward (≈ 2× the forward): 6 forward passes' FLOPs per image.</summary>
    public double FlopsPerSample { get; }

    /// <summary>SimCLR excludes biases and batch-norm parameters (the 1-d ones) from weight decay and LARS adaptation.</summary>
    public bool Decays(string name, Tensor parameter) => parameter.dim() > 1;

    public void PrepareAhead(MicroBatch next) => _views.Announce(next);

    public async Task<double> ForwardBackwardAsync(MicroBatch batch, ICommunicator group, CancellationToken ct)
    {
        using var scope = NewDisposeScope();
        using var replicas = _replicas.Use(group);
        long n = batch.SampleIds.Length;
        using var views = _views.Take(batch);                                      // (2n, C, H, W)
        _context.Phases.Lap(StepPhase.Data);
        var z = _network.forward(views);                                           // (2n, d): both views through one BN
        _context.Phases.Lap(StepPhase.Forward);
        var loss = await _loss.ForwardBackwardAsync(z.narrow(0, 0, n), z.narrow(0, n, n), batch, group, ct); // all-gather, exact global gradient
        _replicas.ThrowIfFailed();                                                 // a global BN all-reduce that failed inside backward
        _context.Phases.Lap(StepPhase.Backward);
        return loss;
    }

    /// <summary>
    /// A reproducible step: every micro-shard's two views through the network on their own, the embeddings
    /// of all shards gathered in shard order, the gradient of the global NT-Xent loss computed from them the
    /// same way on every rank (<see cref="DistributedNtXent.ShardGradient"/>), then each shard's backward
    /// from its own rows. Global batch norm needs every shard at each layer at once, so a rank's shards then
    /// run on concurrent threads and sum their statistics over all shards in shard order
    /// (<see cref="ShardReplicaSum"/>); each shard's parameter gradient comes from <c>autograd.grad</c>,
    /// so the threads never add into the same <c>.grad</c>. Per-shard batch norm runs the shards one by one.
    /// </summary>
    public async Task ForwardBackwardShardsAsync(ShardedBatch batch, ICommunicator group, IShardGradients gradients, CancellationToken ct)
    {
        var plan = batch.Plan;
        int b = plan.ShardSize, world = group.WorldSize, most = ShardPlan.MostPerRank(plan.Shards, world);
        using var scope = NewDisposeScope();
        var views = new Tensor[plan.Count];
        for (var i = 0; i < plan.Count; i++)
        {
            var ids = batch.IdsOf(plan.First + i).Span;
            using var images = _train.Load(ids);
            views[i] = _augmenter.BothViews(images, ids, batch.Step);
        }
        _context.Phases.Lap(StepPhase.Data);

        var shards = _options.GlobalBatchNorm ? new ShardReplicaSum(group, plan, _context.CollectiveTimeout) : null;
        var z = ForEachShard(shards, plan.Count, i =>
        {
            using var shardScope = NewDisposeScope();                                     // a shard thread's own: scopes are per thread
            _shardStatistics?.Enter();
            var embedding = _network.forward(views[i]).DetachFromDisposeScope();           // (2b, d), keeps its graph
            _shardStatistics?.Leave(i);
            return embedding;
        }, () => _shardStatistics?.Begin(plan.Count));
        try
        {
            if (_shardStatistics is not null) await _shardStatistics.FinishAsync(group, plan, ct);
            _context.Phases.Lap(StepPhase.Forward);

            long d = z[0].shape[1], block = 2L * b;
            using var mine = zeros(most * block, d, dtype: float32);
            using (no_grad())
                for (var i = 0; i < plan.Count; i++) mine.narrow(0, i * block, block).copy_(z[i]);
            using var gathered = world > 1 ? empty(world * most * block, d, dtype: float32) : mine.alias();
            if (world > 1) await group.AllGather(mine, gathered, ct);
            var rows = ShardPlan.GatheredRows(plan.Shards, world, block);
            var (gradient, shares) = _loss.ShardGradient(gathered.index_select(0, tensor(rows)), plan.Shards);

            var parameters = Parameters.Select(p => (Tensor)p.Parameter).ToArray();
            ForEachShard(shards, plan.Count, i =>
            {
                using var shardScope = NewDisposeScope();
                var shard = plan.First + i;
                using var rowGradient = gradient.narrow(0, shard * block, block);
                if (shards is null)
                {
                    z[i].backward([rowGradient]);                                                // one shard at a time: .grad is this shard's alone
                    gradients.TakeFromGrad(shard, shares[shard]);
                    return true;
                }
                // Concurrent shards must not add into the same .grad, so each takes its gradient as tensors.
                // TorchSharp 0.107's THSAutograd_grad does not catch libtorch errors (backward does): one would
                // end the process, so only a graph of our own making, with shapes checked above, goes in.
                var grads = autograd.grad([z[i]], parameters, [rowGradient]);
                gradients.Take(shard, [.. grads], shares[shard]);
                return true;
            });
        }
        finally
        {
            foreach (var embedding in z) embedding.Dispose();
        }
        _context.Phases.Lap(StepPhase.Backward);
    }

    /// <summary>Runs <paramref name="work"/> for each local shard: on concurrent threads meeting at the global BN sums, or one after another.</summary>
    private T[] ForEachShard<T>(ShardReplicaSum? shards, int count, Func<int, T> work, Action? before = null)
    {
        before?.Invoke();
        if (shards is null) return [.. Enumerable.Range(0, count).Select(work)];
        using var bound = _replicas.UseShards(shards);
        return shards.Run(work);
    }

    public void AfterUpdate(long step) { }

    public Task<IReadOnlyDictionary<string, double>> EvaluateAsync(ICommunicator group, CancellationToken ct) =>
        _evaluation.KnnAsync(group, Features, _network.FeatureSize, RepresentationEvaluation.RunningStatistics(_buffers), ct);

    /// <summary>The encoder's representation (B, FeatureSize) in eval mode, without gradient and without the head.</summary>
    public Tensor Features(Tensor images) => RepresentationEvaluation.Frozen(_network, () => _network.Features(images));

    public void Dispose()
    {
        _evaluation.Dispose();
        _shardStatistics?.Dispose();
        _views.Dispose();
        _train.Dispose();
        _network.Dispose();
    }
}
