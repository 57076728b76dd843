using Pretrain.Data.Augmentations;
using Pretrain.Shared.Recipes;
using Pretrain.Worker.Collectives;
using Pretrain.Worker.Methods.Contrastive;
using Pretrain.Worker.Methods.Vision;
using Pretrain.Worker.Models.Layers;
using Pretrain.Worker.Models.Vision;
using Pretrain.Worker.Training;
using Pretrain.Worker.Training.Reproducible;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pretrain.Worker.Methods.Bootstrap;

/// <summary>
/// BYOL (Grill et al. 2020): two augmented views of every image; an online network — encoder, projector
/// (Linear–BN–ReLU–Linear, the SimCLR head) and a predictor of the same shape — predicts the target network's
/// projection of the other view (<see cref="ByolLoss"/>, symmetric). The target is encoder + projector only, never
/// trained: after every optimizer step it moves to τ·target + (1 − τ)·online, τ rising from <c>byol.momentum_base</c>
/// to 1 over the run (<see cref="ByolMomentum"/>). No negatives, so nothing is all-gathered: the loss of a sample
/// depends on its own views alone, and a rank's share is the sum of its samples' losses over the global count.
/// <para>
/// Across workers. Every rank holds the same online parameters after every step, so every rank computes the same
/// target update on its own: no collective, and the target stays identical on all ranks (it is part of the
/// replica checksum, <see cref="ReplicatedState"/>, and crosses to newcomers with the rest of the state). Batch
/// norm is as SimCLR's: global by default (<c>byol.global_batch_norm</c>, as the reference's cross-replica BN), in
/// the online network and predictor and in the target network, which runs in train mode on its batch statistics
/// as in the reference; so two workers compute what one worker with the whole global batch would. Both views go
/// through each network in one forward, so BN sees them together.
/// </para>
/// State beyond the trained parameters: the online network's and predictor's BN buffers, the target's parameters
/// and buffers (<c>target.…</c>, the online names with that prefix; the target has no predictor). The schedule's
/// position is the step, which checkpoints hold already. LARS (the reference's optimizer) or any of ours, with
/// biases and BN parameters excluded from weight decay and adaptation.
/// </summary>
public sealed partial class ByolMethod : IRepresentationMethod
{
    /// <summary>Prefix of the target network's tensors in <see cref="State"/> and checkpoints.</summary>
    public const string TargetPrefix = "target.";

    /// <summary>Prefix of the predictor's parameters and buffers.</summary>
    public const string PredictorPrefix = "predictor.";

    private readonly MethodContext _context;
    private readonly ByolOptions _options;
    private readonly ImageBatch _train;
    private readonly ViewAugmenter _augmenter;
    private readonly ViewLoader _views;                  // a micro-batch's views, made one micro-batch ahead
    private readonly ContrastiveNetwork _online, _target;  // encoder + projector; the target is an average of the online one
    private readonly Sequential _predictor;
    private readonly Tensor[] _onlineTensors, _targetTensors; // encoder + projector parameters, in the same order, for the average
    private readonly (string Name, Tensor Tensor)[] _onlineBuffers, _targetBuffers; // online includes the predictor's
    private readonly BlockingReplicaSum _replicas;
    private readonly RepresentationEvaluation _evaluation;
    private readonly ShardStatistics? _onlineStatistics, _targetStatistics; // reproducible runs with per-shard batch norm

    public ByolMethod(MethodContext context)
    {
        _context = context;
        var recipe = context.Recipe;
        _options = (ByolOptions)recipe.Options;
        var shape = (VisionModel)recipe.Model;
        var data = (ImageData)recipe.Data;
        _train = new ImageBatch(data.ImagesPath, "train", context.MaxMicroBatch);
        _augmenter = Augmentations.For(recipe.Augment!, _train.Height, recipe.Seed);
        _views = new ViewLoader(data.ImagesPath, context.MaxMicroBatch, _augmenter, views: 2, ahead: ViewLoader.AheadByDefault);
        _replicas = new BlockingReplicaSum(context.CollectiveTimeout);             // bound to each step's replicas
        Func<long, nn.Module<Tensor, Tensor>>? norm = _options.GlobalBatchNorm
            ? channels => new GlobalBatchNorm2d(channels, _replicas)
            : null;                                                                 // LocalBatchNorm2d: the same names, so checkpoints interchange
        (_online, _predictor) = MethodFactory.Seeded(recipe.Seed, () =>
        {
            var online = new ContrastiveNetwork(shape, _train.Channels, headBatchNorm: true, norm);
            return (online, ContrastiveNetwork.Mlp(shape.ProjectionDim, _options.PredictorHidden, shape.ProjectionDim, batchNorm: true, norm));
        });
        _target = MethodFactory.Seeded(recipe.Seed, () => new ContrastiveNetwork(shape, _train.Channels, headBatchNorm: true, norm));

        Parameters = _online.named_parameters().Select(p => (Name: p.name, Parameter: p.parameter))
            .Concat(_predictor.named_parameters().Select(p => (Name: PredictorPrefix + p.name, Parameter: p.parameter)))
            .OrderBy(p => p.Name, StringComparer.Ordinal).ToArray();
        var projector = Parameters.Where(p => !p.Name.StartsWith(PredictorPrefix, StringComparison.Ordinal)).Select(p => p.Name).ToArray();
        var onlineParameters = _online.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        var targetParameters = _target.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        _onlineTensors = projector.Select(name => (Tensor)onlineParameters[name]).ToArray();
        _targetTensors = projector.Select(name => (Tensor)targetParameters[name]).ToArray();
        _onlineBuffers = _online.named_buffers().Select(b => (Name: b.name, Tensor: b.buffer))
            .Concat(_predictor.named_buffers().Select(b => (Name: PredictorPrefix + b.name, Tensor: b.buffer)))
            .OrderBy(b => b.Name, StringComparer.Ordinal).ToArray();
        _targetBuffers = _target.named_buffers().Select(b => (Name: b.name, Tensor: b.buffer)).OrderBy(b => b.Name, StringComparer.Ordinal).ToArray();
        using (no_grad())
        {
            // The target starts as a copy of the online network and is never trained.
            foreach (var (online, target) in _onlineTensors.Zip(_targetTensors))
                target.requires_grad_(false).copy_(online);
            var onlineBuffers = _online.named_buffers().ToDictionary(b => b.name, b => b.buffer);
            foreach (var (name, buffer) in _targetBuffers)
                buffer.copy_(onlineBuffers[name]);
        }
        ReplicatedState = [.. projector.Select((name, i) => (TargetPrefix + name, _targetTensors[i]))];
        State = [.. _onlineBuffers, .. ReplicatedState, .. _targetBuffers.Select(b => (TargetPrefix + b.Name, b.Tensor))];
        ForwardState = [.. _onlineBuffers.Select(b => b.Tensor), .. _targetBuffers.Select(b => b.Tensor)];

        // Both views: online network and predictor forward and backward (3 forward passes' FLOPs each), target forward only.
        var network = ContrastiveNetwork.ForwardFlops(shape, _train.Channels, _train.Height, _train.Width);
        var predictor = ModelFlops.Linear(shape.ProjectionDim, _options.PredictorHidden) + ModelFlops.Linear(_options.PredictorHidden, shape.ProjectionDim);
        FlopsPerSample = 2 * (3 * (network + predictor) + network);
        _evaluation = new RepresentationEvaluation(context, data);
        if (recipe.IsReproducible && !_options.GlobalBatchNorm)
        {
            _onlineStatistics = new ShardStatistics(_onlineBuffers.Select(b => b.Tensor));
            _targetStatistics = new ShardStatistics(_targetBuffers.Select(b => b.Tensor));
        }
        _online.train();
        _predictor.train();
        _target.train();
    }

    /// <summary>The online network (<c>encoder.…</c>, <c>head.…</c>, the names of SimCLR's network) and the predictor (<c>predictor.…</c>).</summary>
    public IReadOnlyList<(string Name, Parameter Parameter)> Parameters { get; }

    /// <summary>The online network's marks with per-worker batch norm (the predictor is not covered); none with global batch norm, whose backward all-reduces would queue behind buckets.</summary>
    public IReadOnlyList<GradientMark> GradientMarks => _options.GlobalBatchNorm ? [] : _online.GradientMarks;

    /// <summary>BN buffers of the online network and predictor, then the target network's parameters and buffers (<c>target.…</c>).</summary>
    public IReadOnlyList<(string Name, Tensor Tensor)> State { get; }

    /// <summary>The target network's parameters: the same bits on every rank, as the online parameters they average.</summary>
    public IReadOnlyList<(string Name, Tensor Tensor)> ReplicatedState { get; }

    /// <summary>Every BN buffer, of the target network too: it runs in train mode and moves its statistics.</summary>
    public IReadOnlyList<Tensor> ForwardState { get; }

    public long TrainSamples => _train.Count;

    /// <summary>Both views through the online network and predictor forward and backward and through the target forward: 8 network forwards per image.</summary>
    public double FlopsPerSample { get; }

    /// <summary>The target network's parameters, in the order of the online encoder and projector's (tests).</summary>
    internal IReadOnlyList<Tensor> TargetParameters => _targetTensors;

    /// <summary>The online encoder and projector's parameters, without the predictor (tests).</summary>
    internal IReadOnlyList<Tensor> OnlineParameters => _onlineTensors;

    /// <summary>BYOL's reference decays conv and linear weights only: not biases, not BN (the 1-d parameters).</summary>
    public bool Decays(string name, Tensor parameter) => parameter.dim() > 1;

    /// <summary>
    /// Forward and backward of this rank's samples. Nothing to await: the only collectives are global batch
    /// norm's, which block inside the forward and backward (<see cref="BlockingReplicaSum"/>).
    /// </summary>
    public void PrepareAhead(MicroBatch next) => _views.Announce(next);

    public Task<double> ForwardBackwardAsync(MicroBatch batch, ICommunicator group, CancellationToken ct)
    {
        using var scope = NewDisposeScope();
        using var replicas = _replicas.Use(group);
        using var views = _views.Take(batch);                                      // (2n, C, H, W)
        _context.Phases.Lap(StepPhase.Data);
        var targets = TargetProjections(views);                                    // (2n, d), no graph
        using var globalCount = ((double)batch.GlobalCount).ToScalar();            // explicit: an implicit Scalar may be finalized mid-call (see GlobalBatchNorm2d)
        var loss = ByolLoss.Symmetric(Predictions(views), targets).sum().div(globalCount); // this rank's share of the step's mean
        _context.Phases.Lap(StepPhase.Forward);
        loss.backward();
        _replicas.ThrowIfFailed();                                                 // a global BN all-reduce that failed inside backward
        _context.Phases.Lap(StepPhase.Backward);
        return Task.FromResult((double)loss.item<float>());
    }

    /// <summary>The online network's predictions of <paramref name="views"/> (B, C, H, W) → (B, d), with their graph.</summary>
    private Tensor Predictions(Tensor views)
    {
        using var scope = NewDisposeScope();
        return _predictor.forward(_online.forward(views)).MoveToOuterDisposeScope();
    }

    /// <summary>The target network's projections of <paramref name="views"/> (B, C, H, W) → (B, d), without a graph: BYOL's stop-gradient.</summary>
    private Tensor TargetProjections(Tensor views)
    {
        using var noGrad = no_grad();
        return _target.forward(views);
    }

    /// <summary>
    /// The target moves towards the online network by 1 − τ of the way, τ at this step of BYOL's cosine schedule;
    /// every rank does it alike on its own. The predictor has no target, and the target's BN buffers follow its
    /// own forward passes, not the online network's.
    /// </summary>
    public void AfterUpdate(long step) =>
        MomentumUpdate.Apply(_targetTensors, _onlineTensors, ByolMomentum.At(_options.MomentumBase, step, _context.Recipe.Steps));

    /// <summary>
    /// kNN accuracy of the online encoder's features, test split against train split; per-worker BN running
    /// statistics (of the online network and predictor) are averaged first so every rank evaluates the same encoder.
    /// </summary>
    public Task<IReadOnlyDictionary<string, double>> EvaluateAsync(ICommunicator group, CancellationToken ct) =>
        _evaluation.KnnAsync(group, Features, _online.FeatureSize, RepresentationEvaluation.RunningStatistics(_onlineBuffers), ct);

    /// <summary>The online encoder's representation (B, FeatureSize) in eval mode, without gradient, before the projector.</summary>
    public Tensor Features(Tensor images) => RepresentationEvaluation.Frozen(_online, () => _online.Features(images));

    public void Dispose()
    {
        _evaluation.Dispose();
        _onlineStatistics?.Dispose();
        _targetStatistics?.Dispose();
        _views.Dispose();
        _train.Dispose();
        _predictor.Dispose();
        _target.Dispose();
        _online.Dispose();
    }
}
