using Pretrain.Data.Random;
using static TorchSharp.torch;

namespace Pretrain.Data.Collators;

/// <summary>BERT's masking recipe (Devlin et al. 2019, §3.1) and the ids it needs.</summary>
/// <param name="VocabSize">Token ids are in [0, VocabSize).</param>
/// <param name="MaskId">The [MASK] id.</param>
/// <param name="SpecialIds">Ids never chosen for prediction nor drawn as random tokens: [CLS], [SEP], [PAD], …; [MASK] is added.</param>
public sealed record MaskedLmConfig(int VocabSize, int MaskId, IReadOnlyList<int> SpecialIds)
{
    /// <summary>Fraction of non-special tokens chosen for prediction (BERT: 15%).</summary>
    public float MaskProbability { get; init; } = 0.15f;

    /// <summary>Of the chosen tokens, the fraction replaced by [MASK] (80%) and by a random ordinary token (10%); the rest stay.</summary>
    public float MaskTokenFraction { get; init; } = 0.8f;
    public float RandomTokenFraction { get; init; } = 0.1f;
}

/// <summary>
/// Masked-LM inputs and labels. Each token's fate is a pure function of (seed, step, sample id, position):
/// position t uses Philox block t of the sample's stream — word 0 chooses it (Bernoulli, as Hugging
/// Face's DataCollatorForLanguageModeling, so counts vary around 15%), word 1 picks [MASK] / random /
/// unchanged, word 2 the random token. A sample is masked the same on any rank and in any batch.
/// </summary>
public sealed class MaskedLmCollator
{
    /// <summary>Label of positions not to predict: PyTorch cross_entropy's default ignore_index.</summary>
    public const long IgnoreIndex = -100;
    private const uint Stream = 0x4D4C4D; // "MLM": keeps masking apart from other draws of the same (seed, step, sample)

    private readonly MaskedLmConfig _config;
    private readonly ulong _seed;
    private readonly HashSet<int> _special;
    private readonly int[] _sortedSpecial;  // ascending, for mapping k-th ordinary token → id without a vocabulary-sized table
    private readonly int _ordinaryTokens;

    public MaskedLmCollator(MaskedLmConfig config, long seed)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(config.VocabSize, 2);
        _special = [.. config.SpecialIds, config.MaskId];
        if (_special.Any(id => id < 0 || id >= config.VocabSize))
            throw new ArgumentException($"special ids must be in [0, {config.VocabSize})");
        if (!(config.MaskProbability is >= 0 and <= 1 && config.MaskTokenFraction >= 0 && config.RandomTokenFraction >= 0
              && config.MaskTokenFraction + config.RandomTokenFraction <= 1))
            throw new ArgumentException("MaskProbability must be in [0, 1] and MaskTokenFraction + RandomTokenFraction at most 1");
        _sortedSpecial = [.. _special.Order()];
        _ordinaryTokens = config.VocabSize - _sortedSpecial.Length;
        if (_ordinaryTokens < 1)
            throw new ArgumentException("the vocabulary has no ordinary tokens");
        _config = config;
        _seed = (ulong)seed;
    }

    /// <summary>
    /// Masks one sequence: <paramref name="inputs"/> gets the corrupted tokens, <paramref name="labels"/>
    /// the original id at chosen positions and <see cref="IgnoreIndex"/> elsewhere.
    /// </summary>
    public void Mask(ReadOnlySpan<int> tokens, long step, long sampleId, Span<long> inputs, Span<long> labels)
    {
        if (inputs.Length != tokens.Length || labels.Length != tokens.Length)
            throw new ArgumentException($"inputs and labels need {tokens.Length} places, got {inputs.Length} and {labels.Length}");
        var rng = new CounterRandom(_seed, step, sampleId, Stream);
        var keep = _config.MaskTokenFraction + _config.RandomTokenFraction;
        for (var t = 0; t < tokens.Length; t++)
        {
            var token = tokens[t];
            inputs[t] = token;
            labels[t] = IgnoreIndex;
            if (_special.Contains(token))
                continue;
            var block = rng.Block(t);
            if (CounterRandom.ToUnit(block.X0) >= _config.MaskProbability)
                continue;
            labels[t] = token;
            var how = CounterRandom.ToUnit(block.X1);
            if (how < _config.MaskTokenFraction)
                inputs[t] = _config.MaskId;
            else if (how < keep)
                inputs[t] = OrdinaryToken((int)(((ulong)block.X2 * (ulong)_ordinaryTokens) >> 32));
        }
    }

    /// <summary>
    /// Masks a batch: <paramref name="tokens"/> holds B sequences of equal length row after row, one per
    /// id in <paramref name="sampleIds"/>. Returns int64 (B, T) inputs and labels.
    /// </summary>
    public (Tensor Inputs, Tensor Labels) Collate(ReadOnlySpan<int> tokens, ReadOnlySpan<long> sampleIds, long step)
    {
        if (sampleIds.Length == 0 || tokens.Length % sampleIds.Length != 0)
            throw new ArgumentException($"{tokens.Length} tokens do not split into {sampleIds.Length} equal sequences");
        var length = tokens.Length / sampleIds.Length;
        var (inputs, labels) = (new long[tokens.Length], new long[tokens.Length]);
        for (var b = 0; b < sampleIds.Length; b++)
            Mask(tokens.Slice(b * length, length), step, sampleIds[b], inputs.AsSpan(b * length, length), labels.AsSpan(b * length, length));
        long[] shape = [sampleIds.Length, length];
        return (tensor(inputs, shape), tensor(labels, shape)); // (B, T) each
    }

    /// <summary>The <paramref name="k"/>-th id that is not special, in ascending order.</summary>
    private int OrdinaryToken(int k)
    {
        var id = k;
        foreach (var special in _sortedSpecial)
            if (special <= id)
                id++;
            else
                break;
        return id;
    }
}
