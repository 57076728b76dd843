using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using Pretrain.Data.Preparation;
using Pretrain.Data.Shards;
using Pretrain.Data.Tokenizers;

namespace Pretrain.Data.Text;

/// <summary>
/// A text preparation's Finish: verifies every shard, counts tokens per split, builds the compact
/// vocabulary (when asked) from the ids the shards hold, and writes vocabulary.json, then index.json
/// (both atomically, index.json last). index.json is the shards' schema (docs/FORMATS.md) plus, per
/// split, "tokens", and under "tokenizer" a "compact" block when the vocabulary is compacted.
/// </summary>
public static class TextIndex
{
    private static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        WriteIndented = true,
    };

    public static void Write(PrepareSpec spec, ITokenizer tokenizer, ShardDType dtype, IReadOnlyList<TextShard> shards)
    {
        var used = spec.CompactVocabulary ? new bool[tokenizer.VocabularySize] : null;
        var splits = new Dictionary<string, ShardSplit>();
        var tokens = new Dictionary<string, long>();
        foreach (var group in shards.GroupBy(s => s.Split))
        {
            var entries = new List<ShardEntry>();
            long count = 0;
            foreach (var shard in group)
            {
                var path = Path.Combine(spec.Output, shard.File);
                if (!File.Exists(path))
                    throw new InvalidDataException($"{path}: missing; every task must run before the index is written");
                using var reader = ShardReader.Open(path);
                if (reader.Count != shard.Documents.Length || reader.Layout.DType != dtype)
                    throw new InvalidDataException($"{path}: expected {shard.Documents.Length} {ShardFormat.DTypeName(dtype)} records, found {reader.Count} {ShardFormat.DTypeName(reader.Layout.DType)}");
                count += CountTokens(reader, used);
                entries.Add(new ShardEntry(shard.File, reader.Count, reader.FileBytes, ShardEntry.FormatChecksum(reader.Checksum)));
            }
            splits[group.Key] = new ShardSplit(entries.Sum(e => e.Records), entries);
            tokens[group.Key] = count;
        }

        var index = new ShardIndex(ShardIndex.CurrentVersion, "tokens", ShardFormat.DTypeName(dtype), splits,
            Tokenizer: new TokenizerIndexInfo(tokenizer.Name, tokenizer.VocabularySize, SpecialTokenText.ByName(tokenizer.Specials)),
            Source: "text");
        var json = JsonSerializer.SerializeToNode(index, Json)!.AsObject();
        foreach (var (split, count) in tokens)
            json["splits"]![split]!.AsObject()["tokens"] = count;
        if (used is not null)
        {
            var vocabulary = CompactVocabulary.Build(tokenizer, used);
            vocabulary.Save(spec.Output);
            var compact = new CompactTokenizer(tokenizer, vocabulary);
            json["tokenizer"]!.AsObject()["compact"] = new JsonObject
            {
                ["file"] = CompactVocabulary.FileName,
                ["vocabularySize"] = compact.VocabularySize,
                ["specialTokens"] = JsonSerializer.SerializeToNode(SpecialTokenText.ByName(compact.Specials)),
            };
        }
        AtomicFile.WriteAllBytes(Path.Combine(spec.Output, ShardIndex.FileName), JsonSerializer.SerializeToUtf8Bytes(json, Json));
    }

    private static long CountTokens(ShardReader reader, bool[]? used)
    {
        long count = 0;
        for (long r = 0; r < reader.Count; r++)
        {
            count += reader.RecordLength(r);
            if (used is null)
                continue;
            if (reader.Layout.DType == ShardDType.UInt16)
                foreach (var id in reader.Record<ushort>(r))
                    used[id] = true;
            else
                foreach (var id in reader.Record<int>(r))
                    used[id] = true;
        }
        return count;
    }
}
