using Pretrain.Data;
using Pretrain.Data.Collators;
using Pretrain.Data.Sampling;
using Pretrain.Shared.Recipes;
using Pretrain.Worker.Collectives;
using Pretrain.Worker.Models;
using Pretrain.Worker.Models.Layers;
using Pretrain.Worker.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pretrain.Worker.Methods.Language;

/// <summary>
/// BERT masked language modelling: each sample is a window of <c>context</c> tokens of the training
/// stream (bytes of a text file, or the packed token shards of <c>pretrain prepare text</c>, [SEP] between
/// documents), masked by <see cref="MaskedLmCollator"/> (15% chosen; 80% [MASK], 10% random, 10%
/// kept) as a pure function of (seed, step, sample id), so a sample is masked the same on any rank. The
/// loss is the cross-entropy of the chosen positions. The step's loss is the mean of the ranks' (and
/// micro-steps') means, as DDP reports it; their masked counts differ by a few tokens out of ~600.
/// Evaluated on the held-out tail with a fixed masking: validation loss, masked-token accuracy, perplexity.
/// </summary>
public sealed class MaskedLmMethod : IPretrainingMethod
{
    private const long EvaluationStep = uint.MaxValue; // the masking stream of evaluation: a step no training reaches, the same every time

    private readonly MethodContext _context;
    private readonly TransformerModel _shape;
    private readonly ITokenCorpus _corpus;
    private readonly MaskedLmCollator _collator;
    private readonly Bert _model;
    private readonly Tensor _inputs, _labels; // (b, T) int64, filled in place every micro-step
    private readonly long[] _ids;
    private readonly long[] _tokens;   // one window of context + 1 tokens as the corpus gives it
    private readonly int[] _window;    // its first context tokens, for the collator

    public MaskedLmMethod(MethodContext context)
    {
        _context = context;
        var recipe = context.Recipe;
        _shape = recipe.Transformer;
        var options = (MaskedLmOptions)recipe.Options;
        _corpus = LanguageData.Open(recipe);
        // Raw bytes: [MASK] is one more id after the 256 bytes. Prepared tokens: the tokenizer's own
        // [MASK], and its [CLS], [SEP] (between documents) and [PAD] are never chosen nor drawn at random.
        var (vocabulary, mask, specials) = _corpus.Specials is { } s
            ? (_corpus.VocabularySize, s.Mask, new[] { s.Cls, s.Sep, s.Pad })
            : (Bert.ByteVocabulary, Bert.ByteMaskId, Array.Empty<int>());
        _collator = new MaskedLmCollator(new MaskedLmConfig(vocabulary, mask, specials)
        {
            MaskProbability = (float)options.MaskProbability,
            MaskTokenFraction = (float)options.MaskTokenFraction,
            RandomTokenFraction = (float)options.RandomTokenFraction,
        }, recipe.Seed);
        _model = new Bert(_shape, recipe.Seed, vocabulary);
        var micro = context.MaxMicroBatch;
        _inputs = zeros(micro, _shape.Context, dtype: ScalarType.Int64).DetachFromDisposeScope();
        _labels = zeros(micro, _shape.Context, dtype: ScalarType.Int64).DetachFromDisposeScope();
        _ids = new long[micro];
        _tokens = new long[_shape.Context + 1];
        _window = new int[_shape.Context];
        Parameters = _model.named_parameters().OrderBy(p => p.name, StringComparer.Ordinal).Select(p => (p.name, p.parameter)).ToArray();
        FlopsPerSample = ModelFlops.PerToken(_shape, Parameters.Sum(p => p.Parameter.numel())) * _shape.Context;
    }

    public IReadOnlyList<(string Name, Parameter Parameter)> Parameters { get; }
    public IReadOnlyList<GradientMark> GradientMarks => _model.GradientMarks;
    public IReadOnlyList<(string Name, Tensor Tensor)> State => [];
    public IReadOnlyList<Tensor> ForwardState => [];
    public long TrainSamples => _corpus.TrainSamples;
    public double FlopsPerSample { get; }

    public bool Decays(string name, Tensor parameter) => Bert.UsesWeightDecay(name, parameter);

    public Task<double> ForwardBackwardAsync(MicroBatch batch, ICommunicator group, CancellationToken ct)
    {
        using var scope = NewDisposeScope();
        CausalLmMethod.SeedDropout(_context, batch, group.Rank);
        var ids = batch.SampleIds.Span;
        ids.CopyTo(_ids);
        var (inputs, labels) = Load(Split.Train, batch.Step, ids.Length);
        _context.Phases.Lap(StepPhase.Data);
        // This rank's share: its mean over masked tokens weighted by its samples (ranks' masked counts differ by a few tokens).
        var (loss, _, _) = _model.MaskedLoss(inputs, labels);
        using var weight = batch.Weight.ToScalar();                 // explicit: an implicit Scalar may be finalized mid-call (see GlobalBatchNorm2d)
        loss = loss.mul(weight);
        _context.Phases.Lap(StepPhase.Forward);
        loss.backward();
        _context.Phases.Lap(StepPhase.Backward);
        return Task.FromResult((double)loss.item<float>());
    }

    /// <summary>Masks the windows of the first <paramref name="count"/> <see cref="_ids"/> into the input and label buffers; returns views of their rows.</summary>
    private (Tensor Inputs, Tensor Labels) Load(Split split, long step, int count)
    {
        var inputs = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, long>(_inputs.bytes);
        var labels = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, long>(_labels.bytes);
        int t = _shape.Context;
        for (var i = 0; i < count; i++)
        {
            _corpus.Window(split, _ids[i], _tokens);
            for (var j = 0; j < t; j++)
                _window[j] = (int)_tokens[j];
            _collator.Mask(_window, step, _ids[i], inputs.Slice(i * t, t), labels.Slice(i * t, t));
        }
        return (_inputs.narrow(0, 0, count), _labels.narrow(0, 0, count));
    }

    public void AfterUpdate(long step) { }

    /// <summary>
    /// The first <c>eval.batches</c> × <c>batch.global</c> windows of the validation split, in file order,
    /// masked with a fixed stream; each rank takes a contiguous share, and the sums of loss·masked, correct
    /// and masked are allreduced, so the result does not depend on the world size.
    /// </summary>
    public async Task<IReadOnlyDictionary<string, double>> EvaluateAsync(ICommunicator group, CancellationToken ct)
    {
        var recipe = _context.Recipe;
        long windows = (long)recipe.Eval.Batches * recipe.Batch.Global;
        var (first, share) = GlobalBatchSampler.Share(windows, group.WorldSize, group.Rank);
        var totals = new float[3]; // Σ loss·masked, Σ correct, Σ masked
        _model.eval();
        for (var done = 0; done < share; done += _ids.Length)
        {
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            var count = Math.Min(_ids.Length, share - done);
            for (var j = 0; j < count; j++)
                _ids[j] = (first + done + j) % _corpus.ValidationSamples;
            var (inputs, labels) = Load(Split.Validation, EvaluationStep, count);
            var (loss, correct, masked) = _model.MaskedLoss(inputs, labels);
            totals[0] += loss.item<float>() * masked;
            totals[1] += correct;
            totals[2] += masked;
        }
        _model.train();
        if (group.WorldSize > 1)
        {
            using var summed = tensor(totals);
            await group.AllReduceSum(summed, ct);
            summed.data<float>().CopyTo(totals, 0);
        }
        var valLoss = totals[0] / totals[2];
        return new Dictionary<string, double>
        {
            ["val_loss"] = valLoss,
            ["masked_accuracy"] = totals[1] / totals[2],
            ["perplexity"] = Math.Exp(valLoss),
        };
    }

    public void Dispose()
    {
        _corpus.Dispose();
        _inputs.Dispose();
        _labels.Dispose();
        _model.Dispose();
    }
}
