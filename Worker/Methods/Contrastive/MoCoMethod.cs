using Pretrain.Data.Augmentations;
using Pretrain.Data.Sampling;
using Pretrain.Shared.Recipes;
using Pretrain.Worker.Collectives;
using Pretrain.Worker.Methods.Vision;
using Pretrain.Worker.Models.Layers;
using Pretrain.Worker.Models.Vision;
using Pretrain.Worker.Training;
using Pretrain.Worker.Training.Reproducible;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pretrain.Worker.Methods.Contrastive;

/// <summary>
/// MoCo v2 (He et al. 2020; Chen et al. 2020): a query network trained by InfoNCE against one positive
/// key — the other view of the same image, encoded by a momentum copy of the query network — and the K
/// negatives of a queue of past keys. logits = [q·k₊, q·queue] / τ, target 0; q and k are L2-normalised
/// and the gradient flows through q only. The key network is never trained: after every optimizer step
/// it moves to m·key + (1−m)·query, and the keys of the whole global batch (all ranks, rank order) replace
/// the oldest rows of the queue, so every replica holds the same queue.
/// <para>
/// <b>Shuffle BN.</b> Batch norm lets the samples of a batch communicate. If the key of a sample were
/// computed with the statistics of the same batch as its query, the network could find its positive by
/// that shared "signature" instead of by content, and the loss falls without learning a representation.
/// So keys are encoded from a shuffled global batch: the key views of all ranks are all-gathered, permuted
/// by a permutation that is the same on every rank (a pure function of seed, step and micro-step), each
/// rank encodes its slice with its key network in train mode (its BN sees a random subset of the global
/// batch, not the one its queries came from), the keys are all-gathered, unshuffled and each rank takes
/// its own. Global (synchronised) BN would not do: the query's and its positive key's statistics would
/// both be those of the same global batch — the very leak shuffle BN removes — and it would cost a
/// collective in every BN layer forward and backward instead of two all-gathers per micro-step. With one
/// worker the shuffle is a no-op (there is only one batch to take statistics from), as in the reference:
/// shuffle BN cannot help there.
/// </para>
/// State beyond the trained parameters: the query network's BN buffers, the key network's parameters and
/// buffers (<c>key.…</c>), the <c>queue</c> and the <c>queue_position</c>. Keys of every micro-step are kept
/// until <see cref="AfterUpdate"/> enqueues them, after the optimizer step, as the reference does.
/// </summary>
public sealed class MoCoMethod : IRepresentationMethod
{
    private const ulong ShuffleStream = 0x4D6F_436F_5368_7566; // "MoCoShuf": keeps the permutation apart from other seeded draws

    private readonly MethodContext _context;
    private readonly ContrastiveOptions _options;
    private readonly ImageData _data;
    private readonly ImageBatch _train;
    private readonly ViewAugmenter _augmenter;
    private readonly ViewLoader _views;                  // a micro-batch's views, made one micro-batch ahead
    private readonly ContrastiveNetwork _query, _key;
    private readonly Tensor[] _queryTensors, _keyTensors; // parameters, in the same order, for the momentum update
    private readonly (string Name, Tensor Tensor)[] _queryBuffers;
    private readonly MoCoQueue _queue;
    private readonly Tensor _queuePosition;               // (1) int64: the queue's pointer as checkpointed state
    private readonly int _global;                         // samples per micro-step over all ranks (G)
    private readonly Tensor _pendingKeys;                 // (A, G, d): every micro-step's global keys until AfterUpdate
    private int _pendingMicroSteps;
    private readonly RepresentationEvaluation _evaluation;
    private readonly ShardStatistics? _queryStatistics, _keyStatistics; // reproducible runs only: BN buffers per micro-shard

    public MoCoMethod(MethodContext context)
    {
        _context = context;
        var recipe = context.Recipe;
        _options = (ContrastiveOptions)recipe.Options;
        var shape = (VisionModel)recipe.Model;
        _data = (ImageData)recipe.Data;
        _global = context.MaxMicroBatch;
        _train = new ImageBatch(_data.ImagesPath, "train", _global);
        _augmenter = Augmentations.For(recipe.Augment!, _train.Height, recipe.Seed);
        _views = new ViewLoader(_data.ImagesPath, context.MaxMicroBatch, _augmenter, views: 2, ahead: ViewLoader.AheadByDefault);

        _query = MethodFactory.Seeded(recipe.Seed, () => new ContrastiveNetwork(shape, _train.Channels, headBatchNorm: false));
        _key = MethodFactory.Seeded(recipe.Seed, () => new ContrastiveNetwork(shape, _train.Channels, headBatchNorm: false));
        FlopsPerSample = 4 * ContrastiveNetwork.ForwardFlops(shape, _train.Channels, _train.Height, _train.Width);
        Parameters = _query.named_parameters().OrderBy(p => p.name, StringComparer.Ordinal).Select(p => (p.name, p.parameter)).ToArray();
        var keyParameters = _key.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        _queryTensors = Parameters.Select(p => (Tensor)p.Parameter).ToArray();
        _keyTensors = Parameters.Select(p => (Tensor)keyParameters[p.Name]).ToArray();
        _queryBuffers = _query.named_buffers().OrderBy(b => b.name, StringComparer.Ordinal).Select(b => (b.name, b.buffer)).ToArray();
        var keyBuffers = _key.named_buffers().ToDictionary(b => b.name, b => b.buffer);
        using (no_grad())
        {
            // The key network starts as a copy of the query network and is never trained.
            foreach (var (query, key) in _queryTensors.Zip(_keyTensors))
                key.requires_grad_(false).copy_(query);
            foreach (var (name, buffer) in _queryBuffers)
                keyBuffers[name].copy_(buffer);
        }
        _queue = new MoCoQueue(_options.QueueSize, shape.ProjectionDim, recipe.Seed);
        _queuePosition = zeros(1, dtype: int64).DetachFromDisposeScope();
        State = [.. _queryBuffers,
            .. _keyTensors.Select((t, i) => ("key." + Parameters[i].Name, t)),
            .. keyBuffers.OrderBy(b => b.Key, StringComparer.Ordinal).Select(b => ("key." + b.Key, b.Value)),
            ("queue", _queue.Keys), ("queue_position", _queuePosition)];

        _pendingKeys = empty(recipe.Batch.Accumulation, _global, shape.ProjectionDim, dtype: float32).DetachFromDisposeScope();
        _query.train();
        _key.train();
        _evaluation = new RepresentationEvaluation(context, _data);
        if (recipe.IsReproducible)
        {
            _queryStatistics = new ShardStatistics(_queryBuffers.Select(b => b.Tensor));
            _keyStatistics = new ShardStatistics(keyBuffers.OrderBy(b => b.Key, StringComparer.Ordinal).Select(b => b.Value));
        }
    }

    public IReadOnlyList<(string Name, Parameter Parameter)> Parameters { get; }

    /// <summary>The query network's marks (its batch norm is per worker, shuffled: no collective in backward); the key network is never trained.</summary>
    public IReadOnlyList<GradientMark> GradientMarks => _query.GradientMarks;

    public IReadOnlyList<(string Name, Tensor Tensor)> State { get; }

    /// <summary>The BN buffers of the query and the key network: both move in the forward pass (the key network in train mode).</summary>
    public IReadOnlyList<Tensor> ForwardState => [.. State.Where(s => s.Name != "queue" && s.Name != "queue_position" && !IsKeyParameter(s.Name)).Select(s => s.Tensor)];

    private bool IsKeyParameter(string name) => name.StartsWith("key.", StringComparison.Ordinal) && Parameters.Any(p => "key." + p.Name == name);

    public long TrainSamples => _train.Count;
    /// <summary>The query view forward and backward (3 forward passes' FLOPs) and the key view forward only: 4 per image.</summary>
    public double FlopsPerSample { get; }

    /// <summary>The key network's parameters, in <see cref="Parameters"/> order (tests).</summary>
    internal IReadOnlyList<Tensor> KeyParameters => _keyTensors;

    /// <summary>The queue (K, d) as it stands (tests).</summary>
    internal Tensor QueueKeys => _queue.Keys;

    /// <summary>MoCo's reference decays conv and linear weights only: not biases, not BN (the 1-d parameters).</summary>
    public bool Decays(string name, Tensor parameter) => parameter.dim() > 1;

    /// <summary>
    /// The permutation of the G keys of a micro-step's global batch for shuffle BN: a pure function of
    /// (seed, step, micro-step), so every rank draws the same one without communicating.
    /// </summary>
    internal static Tensor ShufflePermutation(long seed, long step, int microStep, long count)
    {
        using var generator = new Generator(SplitMix64.Combine(SplitMix64.Combine((ulong)seed, ShuffleStream), (ulong)step, (ulong)microStep));
        return randperm(count, generator: generator);
    }

    public void PrepareAhead(MicroBatch next) => _views.Announce(next);

    public async Task<double> ForwardBackwardAsync(MicroBatch batch, ICommunicator group, CancellationToken ct)
    {
        using var scope = NewDisposeScope();
        var n = batch.SampleIds.Length;
        using var views = _views.Take(batch);                                  // (2n, C, H, W) float: view 0, then view 1
        var queryViews = views.narrow(0, 0, n);
        var keyViews = views.narrow(0, n, n);
        _context.Phases.Lap(StepPhase.Data);

        var keys = await KeysAsync(keyViews, batch, group, ct);                // (n, d), no graph
        var q = nn.functional.normalize(_query.forward(queryViews), p: 2, dim: 1);        // (n, d)
        var positive = (q * keys).sum(1, keepdim: true);                       // (n, 1)
        var negative = q.matmul(_queue.Keys.t());                              // (n, K)
        // Explicit Scalars, disposed here: an implicit one may be finalized during the native call (see GlobalBatchNorm2d).
        using var tau = _options.Temperature.ToScalar();
        using var weight = batch.Weight.ToScalar();
        var logits = cat([positive, negative], 1).div_(tau);                   // (n, 1 + K)
        var loss = nn.functional.cross_entropy(logits, zeros(q.shape[0], dtype: int64)).mul(weight); // this rank's share of the step's mean
        _context.Phases.Lap(StepPhase.Forward);
        loss.backward();
        _context.Phases.Lap(StepPhase.Backward);
        return loss.item<float>();
    }

    /// <summary>
    /// This rank's keys (n, d) of <paramref name="keyViews"/> by shuffle BN; the micro-step's global keys
    /// (G, d) in rank order go to the pending rows that <see cref="AfterUpdate"/> enqueues. Shares may differ
    /// by one sample: what crosses the network is padded to the largest share and the padding dropped.
    /// </summary>
    private async Task<Tensor> KeysAsync(Tensor keyViews, MicroBatch batch, ICommunicator group, CancellationToken ct)
    {
        int world = group.WorldSize, rank = group.Rank;
        long n = keyViews.shape[0];
        var global = _pendingKeys[batch.MicroStep];                            // (G, d)
        _pendingMicroSteps = batch.MicroStep + 1;
        using var noGrad = no_grad();
        if (world == 1)
        {
            global.copy_(nn.functional.normalize(_key.forward(keyViews), p: 2, dim: 1));
            return global;
        }
        var shares = Enumerable.Range(0, world).Select(r => GlobalBatchSampler.Share(_global, world, r)).ToArray();
        long m = shares.Max(s => s.Count);
        var valid = tensor(shares.SelectMany((s, r) => Enumerable.Range(0, s.Count).Select(j => (long)(r * m + j))).ToArray()); // padded row → global order

        using var local = zeros([m, .. keyViews.shape[1..]], dtype: float32);
        local.narrow(0, 0, n).copy_(keyViews);
        using var gatheredViews = empty([world * m, .. keyViews.shape[1..]], dtype: float32);
        await group.AllGather(local, gatheredViews, ct);
        var views = gatheredViews.index_select(0, valid);                                                  // (G, C, H, W) in rank order
        var permutation = ShufflePermutation(_context.Recipe.Seed, batch.Step, batch.MicroStep, _global);  // shuffled[j] = views[perm[j]]
        var (start, count) = shares[rank];
        var slice = views.index_select(0, permutation.narrow(0, start, count));                            // this rank's share of the shuffled batch
        using var mine = zeros(m, global.shape[1], dtype: float32);
        mine.narrow(0, 0, count).copy_(nn.functional.normalize(_key.forward(slice), p: 2, dim: 1));        // (count, d), padded to m
        using var gatheredKeys = empty(world * m, global.shape[1], dtype: float32);
        await group.AllGather(mine, gatheredKeys, ct);
        global.index_copy_(0, permutation, gatheredKeys.index_select(0, valid));                           // unshuffle: global[perm[j]] = keys[j]
        return global.narrow(0, shares[rank].Start, n);
    }

    /// <summary>
    /// A reproducible step: each micro-shard is one of MoCo's GPUs. Shuffle BN by a permutation of the whole
    /// global batch that depends on (seed, step) alone: key shard j encodes the key views of the samples at
    /// shuffled positions [j·b, (j+1)·b) with its own batch statistics, whichever rank holds it; the key shards
    /// are all-gathered in shard order and unshuffled into the global keys. Then each query shard's forward,
    /// loss against its own samples' keys and the queue, and backward, on its own. BN running statistics
    /// move once per step by the shard-order mean (<see cref="ShardStatistics"/>).
    /// </summary>
    public async Task ForwardBackwardShardsAsync(ShardedBatch batch, ICommunicator group, IShardGradients gradients, CancellationToken ct)
    {
        var plan = batch.Plan;
        int b = plan.ShardSize, world = group.WorldSize, most = ShardPlan.MostPerRank(plan.Shards, world);
        long d = _pendingKeys.shape[2];
        using var scope = NewDisposeScope();
        var global = _pendingKeys[0];                                                       // (B, d) in global batch order
        _pendingMicroSteps = 1;
        var permutation = ShufflePermutation(_context.Recipe.Seed, batch.Step, 0, plan.GlobalCount); // shuffled position p holds batch position perm[p]
        var order = permutation.data<long>().ToArray();
        var ids = batch.GlobalIds.Span;
        var (keyStatistics, queryStatistics) = (_keyStatistics!, _queryStatistics!);

        using var mine = zeros(most * b, d, dtype: float32);
        keyStatistics.Begin(plan.Count);
        var shuffled = new long[b];
        using (no_grad())
            for (var i = 0; i < plan.Count; i++)
            {
                for (var t = 0; t < b; t++) shuffled[t] = ids[(int)order[(plan.First + i) * b + t]];
                using var images = _train.Load(shuffled);
                var keyViews = _augmenter.Augment(images, shuffled, batch.Step, view: 1);
                keyStatistics.Enter();
                mine.narrow(0, i * b, b).copy_(nn.functional.normalize(_key.forward(keyViews), p: 2, dim: 1));
                keyStatistics.Leave(i);
            }
        _context.Phases.Lap(StepPhase.Data);
        using var gathered = empty(world * most * b, d, dtype: float32);
        await group.AllGather(mine, gathered, ct);
        await keyStatistics.FinishAsync(group, plan, ct);
        var rows = ShardPlan.GatheredRows(plan.Shards, world, b);                            // shuffled position → gathered row
        using (no_grad())
            global.index_copy_(0, permutation, gathered.index_select(0, tensor(rows)));   // unshuffle: global[perm[p]] = keys[p]

        queryStatistics.Begin(plan.Count);
        for (var i = 0; i < plan.Count; i++)
        {
            using var shardScope = NewDisposeScope();
            var shard = batch.Shard(i);
            using var images = _train.Load(shard.SampleIds.Span);
            var queryViews = _augmenter.Augment(images, shard.SampleIds.Span, batch.Step, view: 0);
            queryStatistics.Enter();
            var q = nn.functional.normalize(_query.forward(queryViews), p: 2, dim: 1);   // (b, d)
            queryStatistics.Leave(i);
            var keys = global.narrow(0, (long)shard.Shard * b, b);
            using var tau = _options.Temperature.ToScalar();                             // explicit Scalars: see GlobalBatchNorm2d
            using var weight = shard.Weight.ToScalar();
            var logits = cat([(q * keys).sum(1, keepdim: true), q.matmul(_queue.Keys.t())], 1).div_(tau);
            var loss = nn.functional.cross_entropy(logits, zeros(b, dtype: int64)).mul(weight);
            loss.backward();
            gradients.TakeFromGrad(shard.Shard, loss.item<float>());
        }
        _context.Phases.Lap(StepPhase.Backward);
        await queryStatistics.FinishAsync(group, plan, ct);
    }

    /// <summary>Momentum update of the key network, then the global keys of every micro-step, in order, into the queue.</summary>
    public void AfterUpdate(long step)
    {
        MomentumUpdate.Apply(_keyTensors, _queryTensors, _options.Momentum);
        _queue.Pointer = _queuePosition.data<long>()[0];
        for (var k = 0; k < _pendingMicroSteps; k++)
        {
            using var keys = _pendingKeys[k];
            _queue.Enqueue(keys);
        }
        _queuePosition.data<long>()[0] = _queue.Pointer;
        _pendingMicroSteps = 0;
    }

    /// <summary>
    /// kNN accuracy of the query encoder's features, test split against train split. The query network's
    /// BN running statistics differ by rank (each saw its own batches), so they are averaged first and
    /// every rank evaluates the same encoder.
    /// </summary>
    public Task<IReadOnlyDictionary<string, double>> EvaluateAsync(ICommunicator group, CancellationToken ct) =>
        _evaluation.KnnAsync(group, Features, _query.FeatureSize, RepresentationEvaluation.RunningStatistics(_queryBuffers), ct);

    /// <summary>The query encoder's representation (B, FeatureSize) in eval mode, without gradient.</summary>
    public Tensor Features(Tensor images) => RepresentationEvaluation.Frozen(_query, () => _query.Features(images));

    public void Dispose()
    {
        _evaluation.Dispose();
        _queryStatistics?.Dispose();
        _keyStatistics?.Dispose();
        _views.Dispose();
        _train.Dispose();
        _pendingKeys.Dispose();
        _queuePosition.Dispose();
        _queue.Dispose();
        _key.Dispose();
        _query.Dispose();
    }
}
