using System.Text.Json;
using System.Text.Json.Serialization;
using Pretrain.Data.Shards;

namespace Pretrain.Data.Tokenizers;

/// <summary>
/// Only the token ids a corpus uses, renumbered densely: compact id i stands for <see cref="OriginalIds"/>[i].
/// The ordinary ids that occur come first in ascending original order, then the four specials, so
/// [CLS], [SEP], [MASK], [PAD] are always the last four compact ids. The KJV uses 11,537 of cl100k_base's
/// 100,277 ordinary ids (bench/textprep.sh): a 512-wide embedding shrinks from 51M to 5.9M parameters. Stored as vocabulary.json next to
/// the shards (which keep original ids; see docs/FORMATS.md, "Text shards").
/// </summary>
public sealed record CompactVocabulary(string Tokenizer, IReadOnlyList<int> OriginalIds)
{
    public const string FileName = "vocabulary.json";

    private static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        NumberHandling = JsonNumberHandling.Strict,
    };

    public int VocabularySize => OriginalIds.Count;

    /// <summary>The ordinary ids marked in <paramref name="used"/> (indexed by original id), then the tokenizer's specials.</summary>
    public static CompactVocabulary Build(ITokenizer tokenizer, ReadOnlySpan<bool> used)
    {
        var s = tokenizer.Specials;
        var ids = new List<int>();
        for (var id = 0; id < Math.Min(used.Length, s.Cls); id++)
            if (used[id])
                ids.Add(id);
        ids.AddRange([s.Cls, s.Sep, s.Mask, s.Pad]);
        return new CompactVocabulary(tokenizer.Name, ids);
    }

    /// <summary>original id → compact id, -1 where the id is not in the compact vocabulary.</summary>
    public int[] CompactByOriginal(int originalVocabularySize)
    {
        var map = new int[originalVocabularySize];
        Array.Fill(map, -1);
        for (var i = 0; i < OriginalIds.Count; i++)
            map[OriginalIds[i]] = i;
        return map;
    }

    public void Save(string directory) =>
        AtomicFile.WriteAllBytes(Path.Combine(directory, FileName), JsonSerializer.SerializeToUtf8Bytes(this, Json));

    /// <summary>Reads <c>directory/vocabulary.json</c>; a malformed file gives an error naming it.</summary>
    public static CompactVocabulary Load(string directory)
    {
        var path = Path.Combine(directory, FileName);
        CompactVocabulary? vocabulary;
        try
        {
            vocabulary = JsonSerializer.Deserialize<CompactVocabulary>(File.ReadAllBytes(path), Json);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: line {e.LineNumber + 1}: expected a compact vocabulary ({e.Message})", e);
        }
        if (vocabulary?.OriginalIds is not { Count: >= 4 } ids || vocabulary.Tokenizer is null
            || ids.Distinct().Count() != ids.Count || ids.Any(id => id < 0))
            throw new InvalidDataException($"{path}: expected {{\"tokenizer\", \"originalIds\"}} with distinct non-negative ids, the four specials last");
        return vocabulary;
    }
}

/// <summary>A tokenizer over a <see cref="CompactVocabulary"/>: encodes to compact ids and decodes them.</summary>
public sealed class CompactTokenizer : ITokenizer
{
    private readonly ITokenizer inner;
    private readonly CompactVocabulary vocabulary;
    private readonly int[] compactByOriginal;
    private readonly List<int> scratch = [];

    public CompactTokenizer(ITokenizer inner, CompactVocabulary vocabulary)
    {
        if (vocabulary.Tokenizer != inner.Name)
            throw new InvalidDataException($"compact vocabulary is for '{vocabulary.Tokenizer}', not '{inner.Name}'");
        if (vocabulary.OriginalIds.Any(id => id >= inner.VocabularySize))
            throw new InvalidDataException($"compact vocabulary holds ids beyond {inner.Name}'s {inner.VocabularySize}");
        this.inner = inner;
        this.vocabulary = vocabulary;
        compactByOriginal = vocabulary.CompactByOriginal(inner.VocabularySize);
        Specials = SpecialTokenText.After(vocabulary.VocabularySize - SpecialTokenText.Names.Count);
    }

    public string Name => inner.Name;
    public int VocabularySize => vocabulary.VocabularySize;
    public SpecialTokens Specials { get; }

    /// <summary>Not thread-safe (one scratch list). Text with tokens the corpus never used is an error.</summary>
    public void Encode(string text, List<int> ids)
    {
        scratch.Clear();
        inner.Encode(text, scratch);
        foreach (var id in scratch)
        {
            var compact = compactByOriginal[id];
            if (compact < 0)
                throw new InvalidDataException($"token {id} of {inner.Name} is not in the compact vocabulary of {VocabularySize} ids");
            ids.Add(compact);
        }
    }

    public string Decode(ReadOnlySpan<int> ids)
    {
        var original = new int[ids.Length];
        for (var i = 0; i < ids.Length; i++)
        {
            if ((uint)ids[i] >= (uint)VocabularySize)
                throw new ArgumentOutOfRangeException(nameof(ids), ids[i], $"token id outside the compact vocabulary 0-{VocabularySize - 1}");
            original[i] = vocabulary.OriginalIds[ids[i]];
        }
        return inner.Decode(original);
    }
}
