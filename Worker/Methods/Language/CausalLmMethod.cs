using Pretrain.Data.Torch;
using Pretrain.Data;
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
/// GPT causal language modelling (nanoGPT's recipe): each sample is a window of context + 1 tokens of
/// the training stream — bytes of a text file, or the packed token shards of <c>pretrain prepare
/// text</c> — and the loss is next-token cross-entropy. Evaluated on the held-out split: validation
/// loss, bits per byte (the loss per token over the validation text's UTF-8 bytes per token) and
/// perplexity. Needs no collective of its own.
/// </summary>
public sealed class CausalLmMethod : IPretrainingMethod
{
    private readonly MethodContext _context;
    private readonly TransformerModel _shape;
    private readonly ITokenCorpus _corpus;
    private readonly Gpt _model;
    private readonly TokenBatch _batch;

    public CausalLmMethod(MethodContext context)
    {
        _context = context;
        var recipe = context.Recipe;
        _shape = recipe.Transformer;
        _corpus = LanguageData.Open(recipe);
        _model = new Gpt(_shape, recipe.Seed, _corpus.VocabularySize);
        _batch = new TokenBatch(_corpus, context.MaxMicroBatch);
        Parameters = _model.named_parameters().OrderBy(p => p.name, StringComparer.Ordinal).Select(p => (p.name, p.parameter)).ToArray();
        FlopsPerSample = ModelFlops.PerToken(_shape, Parameters.Sum(p => p.Parameter.numel())) * _shape.Context;
    }

    public IReadOnlyList<(string Name, Parameter Parameter)> Parameters { get; }
    public IReadOnlyList<GradientMark> GradientMarks => _model.GradientMarks;
    public IReadOnlyList<(string Name, Tensor Tensor)> State => [];
    public IReadOnlyList<Tensor> ForwardState => [];
    public long TrainSamples => _corpus.TrainSamples;
    public double FlopsPerSample { get; }

    public bool Decays(string name, Tensor parameter) => Gpt.UsesWeightDecay(name, parameter);

    public Task<double> ForwardBackwardAsync(MicroBatch batch, ICommunicator group, CancellationToken ct)
    {
        using var scope = NewDisposeScope();
        SeedDropout(_context, batch, group.Rank);
        var ids = batch.SampleIds.Span;
        ids.CopyTo(_batch.Ids);
        var (inputs, targets) = _batch.Load(Split.Train, ids.Length);
        _context.Phases.Lap(StepPhase.Data);
        using var weight = batch.Weight.ToScalar();                // explicit: an implicit Scalar may be finalized mid-call (see GlobalBatchNorm2d)
        var loss = _model.Loss(inputs, targets).mul(weight);       // (b, T) → scalar: this rank's share of the step's mean loss
        _context.Phases.Lap(StepPhase.Forward);
        loss.backward();
        _context.Phases.Lap(StepPhase.Backward);
        return Task.FromResult((double)loss.item<float>());
    }

    public void AfterUpdate(long step) { }

    /// <summary>
    /// Dropout is seeded per (step, rank, micro-step) — brief, principle 4 — so runs repeat bit for bit; per
    /// (step, micro-shard) in a reproducible run, so a shard draws the same masks on any rank.
    /// </summary>
    internal static void SeedDropout(MethodContext context, MicroBatch batch, int rank)
    {
        if (context.Recipe.Transformer.Dropout > 0)
            manual_seed((long)(SplitMix64.Combine((ulong)context.Recipe.Seed, (ulong)batch.Step, batch.RandomStream(rank)) >> 1));
    }

    /// <summary>
    /// Mean loss over the first <c>eval.batches</c> × <c>batch.global</c> windows of the validation split, in
    /// stream order (wrapping round when the split is short); each rank evaluates a contiguous share of
    /// them and the sums of loss × windows are allreduced, so the result does not depend on the world size.
    /// </summary>
    public async Task<IReadOnlyDictionary<string, double>> EvaluateAsync(ICommunicator group, CancellationToken ct)
    {
        var recipe = _context.Recipe;
        long windows = (long)recipe.Eval.Batches * recipe.Batch.Global;
        var (first, share) = GlobalBatchSampler.Share(windows, group.WorldSize, group.Rank);
        using var total = zeros(1, dtype: float32);
        _model.eval();
        for (var done = 0; done < share; done += _batch.Capacity)
        {
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            var count = Math.Min(_batch.Capacity, share - done);
            for (var j = 0; j < count; j++)
                _batch.Ids[j] = (first + done + j) % _corpus.ValidationSamples;
            var (inputs, targets) = _batch.Load(Split.Validation, count);
            using var windowsInBatch = count.ToScalar();
            total.add_(_model.Loss(inputs, targets).detach().mul(windowsInBatch), HeldScalars.One);
        }
        _model.train();
        if (group.WorldSize > 1)
            await group.AllReduceSum(total, ct);
        var valLoss = total.item<float>() / (double)windows;
        return new Dictionary<string, double>
        {
            ["val_loss"] = valLoss,
            ["bits_per_byte"] = valLoss / Math.Log(2) / _corpus.ValidationBytesPerToken,
            ["perplexity"] = Math.Exp(valLoss),
        };
    }

    public void Dispose()
    {
        _corpus.Dispose();
        _batch.Dispose();
        _model.Dispose();
    }
}
