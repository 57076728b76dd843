using Pretrain.Data.Shards;
using Pretrain.Tests.Training;
using Xunit;

namespace Pretrain.Tests.Data.Shards;

public class ShardSetTests
{
    private readonly string directory = TestRecipes.TemporaryDirectory();

    // Three shards of 5, 0 and 7 variable-length records; sample g holds [g, g+1, ..., 2g] as int32.
    private void WriteSplit()
    {
        var entries = new List<ShardEntry>();
        var next = 0;
        foreach (var (name, count) in new[] { ("train-00000.shard", 5), ("train-00001.shard", 0), ("train-00002.shard", 7) })
        {
            using var writer = new ShardWriter(Path.Combine(directory, name), ShardLayout.Tokens(ShardDType.Int32));
            for (var i = 0; i < count; i++, next++)
                writer.Append<int>(Enumerable.Range(next, next + 1).ToArray());
            entries.Add(writer.Complete());
        }
        new ShardIndex(ShardIndex.CurrentVersion, "tokens", "int32",
            new Dictionary<string, ShardSplit> { ["train"] = new(12, entries) },
            Tokenizer: new TokenizerIndexInfo("byte", 259)).Save(directory);
    }

    [Fact]
    public void Global_sample_ids_run_through_the_shards_in_order()
    {
        WriteSplit();
        using var set = ShardSet.Open(directory, "train");
        Assert.Equal(12, set.Count);
        foreach (var id in new[] { 11, 0, 4, 5, 6, 9 })
            Assert.Equal(Enumerable.Range(id, id + 1).ToArray(), set.Record<int>(id).ToArray());
        Assert.Equal(259, set.Index.Tokenizer!.VocabularySize);
        Assert.Throws<ArgumentOutOfRangeException>(() => set.Record<int>(12));
    }

    [Fact]
    public void A_shard_that_differs_from_the_index_fails_when_first_touched()
    {
        WriteSplit();
        using (var writer = new ShardWriter(Path.Combine(directory, "train-00002.shard"), ShardLayout.Tokens(ShardDType.Int32)))
        {
            for (var i = 0; i < 7; i++) // same count, different contents: a valid shard, but not the indexed one
                writer.Append<int>([i]);
            writer.Complete();
        }
        using var set = ShardSet.Open(directory, "train");
        Assert.Equal([0], set.Record<int>(0).ToArray()); // the first shard is fine
        var error = Assert.Throws<InvalidDataException>(() => set.Record<int>(6));
        Assert.Contains("train-00002.shard", error.Message);
        Assert.Contains("checksum mismatch", error.Message);
    }

    // Rewrites index.json with the train split's entries edited (the split's sample total kept consistent by the caller).
    private void EditIndex(Func<IReadOnlyList<ShardEntry>, IEnumerable<ShardEntry>> edit)
    {
        var index = ShardIndex.Load(directory);
        var train = index.Splits["train"];
        var shards = edit(train.Shards).ToList();
        (index with { Splits = new Dictionary<string, ShardSplit> { ["train"] = new(shards.Sum(e => e.Records), shards) } }).Save(directory);
    }

    [Fact]
    public void A_shard_whose_hash_differs_from_the_index_names_both_hashes()
    {
        WriteSplit();
        var real = ShardIndex.Load(directory).Splits["train"].Shards[0].Checksum;
        const string Indexed = "0123456789abcdef";
        EditIndex(shards => shards.Select((e, k) => k == 0 ? e with { Checksum = Indexed } : e));
        using var set = ShardSet.Open(directory, "train");
        var error = Assert.Throws<InvalidDataException>(() => set.Record<int>(0));
        Assert.Contains("train-00000.shard", error.Message);
        Assert.Contains($"checksum mismatch with index.json: the index says xxHash64 {Indexed}, the shard hashes to {real}", error.Message);
        Assert.DoesNotContain("record count", error.Message);
    }

    [Fact]
    public void A_shard_whose_record_count_differs_from_the_index_is_a_count_mismatch_not_a_checksum_mismatch()
    {
        WriteSplit();
        // 4 + 0 + 8 instead of 5 + 0 + 7: the split's total still adds up, so only opening the first shard can tell.
        EditIndex(shards => shards.Select((e, k) => k switch { 0 => e with { Records = 4 }, 2 => e with { Records = 8 }, _ => e }));
        using var set = ShardSet.Open(directory, "train");
        var error = Assert.Throws<InvalidDataException>(() => set.Record<int>(0));
        Assert.Contains("train-00000.shard", error.Message);
        Assert.Contains("record count mismatch with index.json: the index says 4 records, the shard holds 5", error.Message);
        Assert.DoesNotContain("checksum", error.Message);
    }

    [Fact]
    public void An_unknown_split_or_a_malformed_index_is_named()
    {
        WriteSplit();
        Assert.Contains("no split 'validation'", Assert.Throws<InvalidDataException>(() => ShardSet.Open(directory, "validation")).Message);
        File.WriteAllText(Path.Combine(directory, ShardIndex.FileName), "{\n \"version\": 1,\n \"splits\": [");
        var error = Assert.Throws<InvalidDataException>(() => ShardSet.Open(directory, "train"));
        Assert.Contains(ShardIndex.FileName, error.Message);
        Assert.Contains("line", error.Message);
    }
}
