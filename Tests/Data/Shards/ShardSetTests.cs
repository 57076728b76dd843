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
