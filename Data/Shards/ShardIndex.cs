using System.Text.Json;
using System.Text.Json.Serialization;

namespace Pretrain.Data.Shards;

/// <summary>
/// index.json: what a prepared folder holds (schema in docs/FORMATS.md). Written last, atomically, by a
/// preparation's Finish, so its presence means every shard it lists is complete.
/// </summary>
public sealed record ShardIndex(
    int Version,                                     // 1
    string Kind,                                     // "tokens" or "images"
    string DType,                                    // "uint8", "uint16" or "int32"
    IReadOnlyDictionary<string, ShardSplit> Splits,  // "train", and "validation" or "test"
    ImageIndexInfo? Image = null,                    // images only
    TokenizerIndexInfo? Tokenizer = null,            // text only
    string? Source = null)                           // what was prepared, e.g. "fashion-mnist"
{
    public const string FileName = "index.json";
    public const int CurrentVersion = 1;

    private static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        WriteIndented = true,
    };

    /// <summary>Reads <c>directory/index.json</c>; a malformed file gives an error naming it and the line.</summary>
    public static ShardIndex Load(string directory)
    {
        var path = Path.Combine(directory, FileName);
        ShardIndex? index;
        try
        {
            index = JsonSerializer.Deserialize<ShardIndex>(File.ReadAllBytes(path), Json);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: line {e.LineNumber + 1}: expected a shard index ({e.Message})", e);
        }
        if (index is null || index.Version != CurrentVersion || index.Splits is null
            || index.Splits.Values.Any(s => s?.Shards is null || s.Samples != s.Shards.Sum(e => e.Records)))
            throw new InvalidDataException($"{path}: expected a version {CurrentVersion} shard index whose splits list shards adding up to their sample counts");
        return index;
    }

    /// <summary>Writes <c>directory/index.json</c> atomically.</summary>
    public void Save(string directory) =>
        AtomicFile.WriteAllBytes(Path.Combine(directory, FileName), JsonSerializer.SerializeToUtf8Bytes(this, Json));
}

/// <summary>One split: its shards in sample order; global sample ids run through them in that order.</summary>
public sealed record ShardSplit(long Samples, IReadOnlyList<ShardEntry> Shards);

/// <summary>One shard file (name relative to the index), its records, its size and its xxHash64 as 16 hex digits.</summary>
public sealed record ShardEntry(string File, long Records, long Bytes, string Checksum)
{
    public static string FormatChecksum(ulong checksum) => checksum.ToString("x16");
}

/// <summary>Image shards: record shape (CHW, uint8) and the class names that labels index (evaluation only).</summary>
public sealed record ImageIndexInfo(int Channels, int Height, int Width, IReadOnlyList<string> LabelNames);

/// <summary>Token shards: the tokenizer, the vocabulary size models must embed, and its special token ids.</summary>
public sealed record TokenizerIndexInfo(
    string Name,
    int VocabularySize,
    IReadOnlyDictionary<string, int>? SpecialTokens = null,
    CompactIndexInfo? Compact = null);               // present when `prepare text --compact-vocabulary` renumbered the ids

/// <summary>The compact vocabulary's file (vocabulary.json), its size and its special token ids.</summary>
public sealed record CompactIndexInfo(string File, int VocabularySize, IReadOnlyDictionary<string, int>? SpecialTokens = null);
