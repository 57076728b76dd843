using System.Text;
using System.Text.Json.Nodes;
using Pretrain.Data.Shards;
using Pretrain.Data.Tokenizers;

namespace Pretrain.Data.Text;

/// <summary>
/// The token shards of <c>pretrain prepare text</c> as a causal stream, packed as nanoGPT packs its
/// token files: each split's documents (records, in sample order) concatenated with [SEP] after each —
/// the end-of-document token, <see cref="Collators.CausalLmCollator.Concatenate"/> — and cut into
/// windows of <c>context + 1</c> tokens. The validation split is the preparation's (by document). When
/// the preparation compacted the vocabulary, ids are mapped to compact ids here (the shards keep the
/// tokenizer's own ids; docs/FORMATS.md), so a model embeds only the tokens the corpus uses.
/// <para>
/// Both streams are held in memory as int32: 4 bytes per token (17 MB for the KJV as bytes, 4 MB as
/// cl100k tokens). Bits per byte need the validation text's UTF-8 length, so the validation documents
/// are decoded once with the tokenizer the index names.
/// </para>
/// </summary>
public sealed class PreparedTextCorpus : ITokenCorpus
{
    private readonly int[] _train, _validation;

    public string Source { get; }
    public int Context { get; }
    public int VocabularySize { get; }
    public SpecialTokens? Specials { get; }
    public long TrainSamples { get; }
    public long ValidationSamples { get; }
    public double ValidationBytesPerToken { get; }

    public PreparedTextCorpus(string folder, int context)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(context, 1);
        (Source, Context) = (folder, context);
        var indexPath = Path.Combine(folder, ShardIndex.FileName);
        if (!File.Exists(indexPath))
            throw new InvalidDataException($"{folder}: no {ShardIndex.FileName} (expected a folder written by `pretrain prepare text`)");
        var index = ShardIndex.Load(folder);
        if (index.Kind != "tokens" || index.Tokenizer is null)
            throw new InvalidDataException($"{indexPath}: holds {index.Kind}, expected token shards written by `pretrain prepare text`");
        if (!index.Splits.ContainsKey("validation"))
            throw new InvalidDataException(
                $"{indexPath}: no validation split, which evaluation needs; prepare with `pretrain prepare text --validation-fraction 0.01` (or more)");

        var tokenizer = TokenizerFactory.Create(index.Tokenizer.Name);
        int[]? compactByOriginal = null;
        if (JsonNode.Parse(File.ReadAllBytes(indexPath))?["tokenizer"]?["compact"] is not null)
        {
            var vocabulary = CompactVocabulary.Load(folder);
            var compact = new CompactTokenizer(tokenizer, vocabulary);
            compactByOriginal = vocabulary.CompactByOriginal(tokenizer.VocabularySize);
            (VocabularySize, Specials) = (compact.VocabularySize, compact.Specials);
        }
        else
        {
            (VocabularySize, Specials) = (tokenizer.VocabularySize, tokenizer.Specials);
        }

        long validationBytes = 0;
        _train = Stream(folder, "train", tokenizer, compactByOriginal, ref validationBytes, countBytes: false);
        _validation = Stream(folder, "validation", tokenizer, compactByOriginal, ref validationBytes, countBytes: true);
        TrainSamples = Windows(_train.Length);
        ValidationSamples = Windows(_validation.Length);
        if (TrainSamples < 1 || ValidationSamples < 1)
            throw new InvalidDataException(
                $"{folder}: the {(TrainSamples < 1 ? "train" : "validation")} split holds {(TrainSamples < 1 ? _train.Length : _validation.Length)} tokens " +
                $"with separators, fewer than one window of {context + 1} (context {context} + 1); use a shorter context or more text");
        ValidationBytesPerToken = (double)validationBytes / _validation.Length;
    }

    public long Samples(Split split) => split == Split.Train ? TrainSamples : ValidationSamples;

    public void Window(Split split, long id, Span<long> destination)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(id);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(id, Samples(split));
        var window = (split == Split.Train ? _train : _validation).AsSpan(checked((int)(id * Context)), Context + 1);
        for (var t = 0; t < window.Length; t++)
            destination[t] = window[t];
    }

    private long Windows(long length) => Math.Max(0, length - 1) / Context;

    /// <summary>The split's records in sample order, each followed by [SEP], as (compact) ids.</summary>
    private int[] Stream(string folder, string split, ITokenizer tokenizer, int[]? compactByOriginal, ref long bytes, bool countBytes)
    {
        using var set = ShardSet.Open(folder, split);
        var stream = new List<int>();
        var document = new List<int>();
        for (long id = 0; id < set.Count; id++)
        {
            document.Clear();
            var reader = set.Locate(id, out var local);
            if (reader.Layout.DType == ShardDType.UInt16)
                foreach (var token in reader.Record<ushort>(local)) document.Add(token);
            else
                foreach (var token in reader.Record<int>(local)) document.Add(token);
            if (countBytes)
                bytes += Encoding.UTF8.GetByteCount(tokenizer.Decode(document.ToArray()));
            foreach (var token in document)
                stream.Add(compactByOriginal is null ? token : Compact(compactByOriginal, token, folder));
            stream.Add(Specials!.Sep);
        }
        return [.. stream];
    }

    private static int Compact(int[] compactByOriginal, int token, string folder) =>
        (uint)token < (uint)compactByOriginal.Length && compactByOriginal[token] >= 0
            ? compactByOriginal[token]
            : throw new InvalidDataException($"{folder}: token {token} is in the shards but not in {CompactVocabulary.FileName}; prepare the folder again");
}
