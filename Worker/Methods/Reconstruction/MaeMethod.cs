using System.Runtime.InteropServices;
using Pretrain.Data.Augmentations;
using Pretrain.Data.Collators;
using Pretrain.Data.Sampling;
using Pretrain.Shared.Recipes;
using Pretrain.Worker.Collectives;
using Pretrain.Worker.Methods.Vision;
using Pretrain.Worker.Models.Layers;
using Pretrain.Worker.Models.Vision;
using Pretrain.Worker.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pretrain.Worker.Methods.Reconstruction;

/// <summary>
/// MAE (He et al. 2022): one lightly augmented view of each image is cut into patches, a share of them
/// (<c>mae.mask_ratio</c>, 75%) is hidden, a ViT encoder sees only the rest and a light decoder reconstructs the pixels
/// of the hidden ones (<see cref="MaskedAutoencoder"/>). Which patches are hidden is a pure function of (seed, step,
/// sample id) (<see cref="PatchMasking"/>), as the view is, so a sample is masked the same on any rank and after any
/// regroup or resume. Samples do not interact — no batch norm, no gathered negatives — so the method needs no collective
/// in its forward pass, and a reproducible run computes its micro-shards one after another with the interface's default.
/// <para>
/// Each sample's loss is its mean over its hidden patches (all samples hide the same number), and the rank
/// differentiates the sum of its samples' losses over the global batch, as the loop expects. Evaluated by the kNN
/// monitor on the encoder's features of whole images, and by the reconstruction loss of the first test images under a
/// fixed masking (<c>val_loss</c>).
/// </para>
/// </summary>
public sealed class MaeMethod : IRepresentationMethod
{
    private const long EvaluationStep = uint.MaxValue; // the masking of evaluation: a step no training reaches, the same every time
    private const int ValidationImages = 1000;          // test images of val_loss: ~0.1 s of forward passes on one core

    private readonly MethodContext _context;
    private readonly ImageData _data;
    private readonly ImageBatch _train;
    private readonly ViewAugmenter _augmenter;
    private readonly ViewLoader _views;                  // a micro-batch's views, made one micro-batch ahead
    private readonly PatchMasking _masking;
    private readonly MaskedAutoencoder _model;
    private readonly Tensor _visible, _masked, _restore; // (b, K), (b, M), (b, N) int64: the micro-batch's masks, filled in place
    private readonly (string Name, Tensor Tensor)[] _buffers;
    private readonly RepresentationEvaluation _evaluation;
    private ImageBatch? _validation;

    public MaeMethod(MethodContext context)
    {
        _context = context;
        var recipe = context.Recipe;
        var shape = (VisionTransformerModel)recipe.Model;
        var options = (MaeOptions)recipe.Options;
        _data = (ImageData)recipe.Data;
        _train = new ImageBatch(_data.ImagesPath, "train", context.MaxMicroBatch);
        if (_train.Height != _train.Width)
            throw new RecipeException(recipe.Source.Path, "data.images", $"{_train.Height}x{_train.Width} images are not square; mae's patch grid needs square ones");
        if (_train.Height % shape.PatchSize != 0)
            throw new RecipeException(recipe.Source.Path, "model.patch_size",
                $"{shape.PatchSize} does not divide the {_train.Height}-px images of {_data.Images}; use a divisor of {_train.Height} (4 or 7 for 28 px)");
        if (shape.FeatureGrid > _train.Height / shape.PatchSize)
            throw new RecipeException(recipe.Source.Path, "model.feature_grid",
                $"{shape.FeatureGrid} is finer than the {_train.Height / shape.PatchSize}x{_train.Height / shape.PatchSize} patch grid; use at most {_train.Height / shape.PatchSize}");
        var patches = (_train.Height / shape.PatchSize) * (_train.Height / shape.PatchSize);
        var visible = PatchMasking.VisibleCount(patches, options.MaskRatio);
        if (visible < 1 || visible >= patches)
            throw new RecipeException(recipe.Source.Path, "mae.mask_ratio",
                $"{options.MaskRatio} leaves {visible} of {patches} patches visible; at least one must be visible and one hidden");
        _masking = new PatchMasking(patches, options.MaskRatio, recipe.Seed);
        var micro = context.MaxMicroBatch;
        _visible = zeros(micro, _masking.Visible, dtype: int64).DetachFromDisposeScope();
        _masked = zeros(micro, _masking.Masked, dtype: int64).DetachFromDisposeScope();
        _restore = zeros(micro, patches, dtype: int64).DetachFromDisposeScope();
        _augmenter = Augmentations.For(recipe.Augment!, _train.Height, recipe.Seed);
        _views = new ViewLoader(_data.ImagesPath, context.MaxMicroBatch, _augmenter, views: 1, ahead: ViewLoader.AheadByDefault);
        _model = MethodFactory.Seeded(recipe.Seed, () => new MaskedAutoencoder(shape, options, _train.Channels, _train.Height, recipe.Seed));
        Parameters = _model.named_parameters().OrderBy(p => p.name, StringComparer.Ordinal).Select(p => (p.name, p.parameter)).ToArray();
        _buffers = _model.named_buffers().OrderBy(b => b.name, StringComparer.Ordinal).Select(b => (b.name, b.buffer)).ToArray();
        FlopsPerSample = 3 * MaskedAutoencoder.ForwardFlops(shape, options, _train.Channels, _train.Height);
        _evaluation = new RepresentationEvaluation(context, _data);
        _model.train();
    }

    public IReadOnlyList<(string Name, Parameter Parameter)> Parameters { get; }
    public IReadOnlyList<GradientMark> GradientMarks => _model.GradientMarks;

    /// <summary>The fixed sin-cos positions of encoder and decoder: not trained, but part of the encoder a checkpoint and an export hold.</summary>
    public IReadOnlyList<(string Name, Tensor Tensor)> State => _buffers;

    /// <summary>Nothing moves in the forward pass (no batch norm).</summary>
    public IReadOnlyList<Tensor> ForwardState => [];

    public long TrainSamples => _train.Count;

    /// <summary>Forward and backward (≈ 2× the forward) of the encoder on the visible patches and the decoder on all: 3 forwards' FLOPs.</summary>
    public double FlopsPerSample { get; }

    /// <summary>Dense layers' matrices only: not biases, LayerNorms or the mask token (<see cref="MaskedAutoencoder.UsesWeightDecay"/>).</summary>
    public bool Decays(string name, Tensor parameter) => MaskedAutoencoder.UsesWeightDecay(name, parameter);

    public void PrepareAhead(MicroBatch next) => _views.Announce(next);

    public Task<double> ForwardBackwardAsync(MicroBatch batch, ICommunicator group, CancellationToken ct)
    {
        using var scope = NewDisposeScope();
        var ids = batch.SampleIds.Span;
        using var views = _views.Take(batch);                                        // (n, C, H, W) float in [0, 1]
        var (visible, masked, restore) = Masks(ids, batch.Step);                     // (n, K), (n, M), (n, N)
        _context.Phases.Lap(StepPhase.Data);
        using var globalCount = batch.GlobalCount.ToScalar();                        // explicit: an implicit Scalar may be finalized mid-call (see GlobalBatchNorm2d)
        var loss = _model.Losses(views, visible, masked, restore).sum().div(globalCount); // this rank's share of the step's mean
        _context.Phases.Lap(StepPhase.Forward);
        loss.backward();
        _context.Phases.Lap(StepPhase.Backward);
        return Task.FromResult((double)loss.item<float>());
    }

    /// <summary>The masks of <paramref name="ids"/> at <paramref name="step"/> in the buffers made once: views of their first rows.</summary>
    private (Tensor Visible, Tensor Masked, Tensor Restore) Masks(ReadOnlySpan<long> ids, long step)
    {
        int n = ids.Length;
        _masking.Fill(ids, step, Longs(_visible, n * _masking.Visible), Longs(_masked, n * _masking.Masked), Longs(_restore, n * _masking.Patches));
        return (_visible.narrow(0, 0, n), _masked.narrow(0, 0, n), _restore.narrow(0, 0, n));
    }

    private static Span<long> Longs(Tensor buffer, int count) => MemoryMarshal.Cast<byte, long>(buffer.bytes)[..count];

    public void AfterUpdate(long step) { }

    public async Task<IReadOnlyDictionary<string, double>> EvaluateAsync(ICommunicator group, CancellationToken ct)
    {
        var knn = await _evaluation.KnnAsync(group, Features, _model.FeatureSize, [], ct); // no batch-norm statistics to agree on
        var eval = knn.ToDictionary(m => m.Key, m => m.Value);
        eval["val_loss"] = await ValidationLossAsync(group, ct);
        return eval;
    }

    /// <summary>The encoder's representation (B, FeatureSize) of whole images, in eval mode and without gradient; no decoder.</summary>
    public Tensor Features(Tensor images) => RepresentationEvaluation.Frozen(_model, () => _model.Features(images));

    /// <summary>
    /// The mean reconstruction loss of the first <see cref="ValidationImages"/> test images, unaugmented and masked by the
    /// fixed <see cref="EvaluationStep"/>: each rank takes a contiguous share and the sums are allreduced, so every rank
    /// returns the same whatever the world size.
    /// </summary>
    private async Task<double> ValidationLossAsync(ICommunicator group, CancellationToken ct)
    {
        _validation ??= new ImageBatch(_data.ImagesPath, "test", FrozenFeatures.ChunkSize);
        var count = Math.Min(ValidationImages, _validation.Count);
        var (first, share) = GlobalBatchSampler.Share(count, group.WorldSize, group.Rank);
        double sum = 0;
        var training = _model.training;
        _model.eval();
        try
        {
            for (var done = 0; done < share; done += FrozenFeatures.ChunkSize)
            {
                ct.ThrowIfCancellationRequested();
                using var scope = NewDisposeScope();
                using var noGrad = no_grad();
                var ids = Enumerable.Range(done, Math.Min(FrozenFeatures.ChunkSize, share - done)).Select(i => first + i).ToArray();
                using var images = _validation.Load(ids);
                var (visible, masked, restore) = _masking.Collate(ids, EvaluationStep);
                sum += _model.Losses(ImageOps.ToUnitFloat(images), visible, masked, restore).sum().item<float>();
            }
        }
        finally
        {
            if (training) _model.train();
        }
        using var total = tensor(new[] { (float)sum });
        if (group.WorldSize > 1)
            await group.AllReduceSum(total, ct);
        return total.item<float>() / (double)count;
    }

    public void Dispose()
    {
        _evaluation.Dispose();
        _validation?.Dispose();
        _views.Dispose();
        _train.Dispose();
        _visible.Dispose();
        _masked.Dispose();
        _restore.Dispose();
        _model.Dispose();
    }
}
