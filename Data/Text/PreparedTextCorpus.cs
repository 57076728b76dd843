using System.Text;
using Pretrain.Data.Collators;
using Pretrain.Data.Shards;
using Pretrain.Data.Tokenizers;

namespace Pretrain.Data.Text;

/// <summary>
/// The token shards of <c>pretrain prepare text</c> as a causal stream, packed as nanoGPT packs its
/// token files: each split's documents (records, in sample order) concatenated with [SEP] after each —
/// the end-of-document token — and cut into windows of <c>context + 1</c> tokens at multiples of the
/// context, as <see cref="CausalLmCollator"/> defines them for a stream held in memory. The validation split is the preparation's (by document). When
/// the preparation compacted the vocabulary, ids are mapped to compact ids here (the shards keep the
/// tokenizer's own ids; docs/FORMATS.md), so a model embeds only the tokens the corpus uses.
/// <para>
/// The streams are never built: a window is copied out of the memory-mapped shards, document by
/// document, with [SEP] written where one ends (<see cref="PackedSplit"/>), so memory is 8 bytes per
/// document whatever the corpus's size. Bits per byte need the validation text's UTF-8 length, so the
/// validation documents are decoded once with the tokenizer the index names.
/// </para>
/// </summary>
public sealed class PreparedTextCorpus : ITokenCorpus
{
    private readonly PackedSplit _train, _validation;

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
        SpecialTokens specials;
        if (index.Tokenizer.Compact is not null)
        {
            var vocabulary = CompactVocabulary.Load(folder);
            var compact = new CompactTokenizer(tokenizer, vocabulary);
            compactByOriginal = vocabulary.CompactByOriginal(tokenizer.VocabularySize);
            (VocabularySize, specials) = (compact.VocabularySize, compact.Specials);
        }
        else
        {
            (VocabularySize, specials) = (tokenizer.VocabularySize, tokenizer.Specials);
        }
        Specials = specials;

        var windows = new CausalLmCollator(context);
        _train = new PackedSplit(folder, "train", compactByOriginal, specials.Sep);
        _validation = new PackedSplit(folder, "validation", compactByOriginal, specials.Sep);
        TrainSamples = windows.Windows(_train.Length);
        ValidationSamples = windows.Windows(_validation.Length);
        if (TrainSamples < 1 || ValidationSamples < 1)
        {
            Dispose();
            throw new InvalidDataException(
                $"{folder}: the {(TrainSamples < 1 ? "train" : "validation")} split holds {(TrainSamples < 1 ? _train.Length : _validation.Length)} tokens " +
                $"with separators, fewer than one window of {context + 1} (context {context} + 1); use a shorter context or more text");
        }
        ValidationBytesPerToken = (double)_validation.Utf8Bytes(tokenizer) / _validation.Length;
    }

    public long Samples(Split split) => split == Split.Train ? TrainSamples : ValidationSamples;

    public void Window(Split split, long id, Span<long> destination)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(id);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(id, Samples(split));
        (split == Split.Train ? _train : _validation).Copy(id * Context, destination[..(Context + 1)]);
    }

    public void Dispose()
    {
        _train?.Dispose();
        _validation?.Dispose();
    }

    /// <summary>
    /// One split as the stream "document 0, [SEP], document 1, [SEP], …" without building it: the end of
    /// each document's [SEP] in the stream (a prefix sum, 8 bytes a document) locates a position by binary
    /// search, and tokens are read from the memory-mapped records, mapped to compact ids when asked.
    /// </summary>
    private sealed class PackedSplit : IDisposable
    {
        private readonly ShardSet _set;
        private readonly long[] _ends;              // _ends[d] = stream position just after document d's [SEP]
        private readonly int[]? _compactByOriginal;
        private readonly int _separator;
        private readonly string _folder;

        public long Length => _ends.Length == 0 ? 0 : _ends[^1];

        public PackedSplit(string folder, string split, int[]? compactByOriginal, int separator)
        {
            (_folder, _compactByOriginal, _separator) = (folder, compactByOriginal, separator);
            _set = ShardSet.Open(folder, split);
            _ends = new long[_set.Count];
            long end = 0;
            for (long d = 0; d < _set.Count; d++)
            {
                var reader = _set.Locate(d, out var local);
                end += reader.RecordLength(local) + 1;
                _ends[d] = end;
            }
        }

        /// <summary>Copies stream positions [start, start + destination.Length) into <paramref name="destination"/>.</summary>
        public void Copy(long start, Span<long> destination)
        {
            var d = Array.BinarySearch(_ends, start);
            d = d >= 0 ? d + 1 : ~d;                  // the first document whose [SEP] ends after start
            var offset = start - (d == 0 ? 0 : _ends[d - 1]);
            var written = 0;
            while (written < destination.Length)
            {
                var reader = _set.Locate(d, out var local);
                var length = _ends[d] - (d == 0 ? 0 : _ends[d - 1]) - 1;
                var take = (int)Math.Min(length - offset, destination.Length - written);
                if (take > 0)
                {
                    var target = destination.Slice(written, take);
                    if (reader.Layout.DType == ShardDType.UInt16)
                        Map(reader.Record<ushort>(local).Slice((int)offset, take), target);
                    else
                        Map(reader.Record<int>(local).Slice((int)offset, take), target);
                    written += take;
                }
                if (written < destination.Length)
                    destination[written++] = _separator;
                d++;
                offset = 0;
            }
        }

        /// <summary>UTF-8 bytes of the split's text: every document decoded by <paramref name="tokenizer"/>.</summary>
        public long Utf8Bytes(ITokenizer tokenizer)
        {
            long bytes = 0;
            var ids = new List<int>();
            for (long d = 0; d < _set.Count; d++)
            {
                ids.Clear();
                var reader = _set.Locate(d, out var local);
                if (reader.Layout.DType == ShardDType.UInt16)
                    foreach (var token in reader.Record<ushort>(local)) ids.Add(token);
                else
                    ids.AddRange(reader.Record<int>(local));
                bytes += Encoding.UTF8.GetByteCount(tokenizer.Decode(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(ids)));
            }
            return bytes;
        }

        public void Dispose() => _set.Dispose();

        private void Map(ReadOnlySpan<ushort> tokens, Span<long> target)
        {
            for (var i = 0; i < tokens.Length; i++)
                target[i] = Compact(tokens[i]);
        }

        private void Map(ReadOnlySpan<int> tokens, Span<long> target)
        {
            for (var i = 0; i < tokens.Length; i++)
                target[i] = Compact(tokens[i]);
        }

        private int Compact(int token) =>
            _compactByOriginal is null ? token
            : (uint)token < (uint)_compactByOriginal.Length && _compactByOriginal[token] >= 0 ? _compactByOriginal[token]
            : throw new InvalidDataException($"{_folder}: token {token} is in the shards but not in {CompactVocabulary.FileName}; prepare the folder again");
    }
}
