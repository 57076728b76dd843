using Pretrain.Data.Images;
using Pretrain.Data.Preparation;
using Pretrain.Data.Shards;
using Pretrain.Tests.Training;
using Xunit;

namespace Pretrain.Tests.Data.Images;

public class Cifar10Tests
{
    private readonly string input = TestRecipes.TemporaryDirectory();
    private readonly string output = TestRecipes.TemporaryDirectory();

    // Image g (global id within its split) has label g % 10 and pixel p = (g * 7 + p) % 251.
    private static byte[] Records(int first, int count) =>
        [.. Enumerable.Range(first, count).SelectMany(g => new[] { (byte)(g % 10) }
            .Concat(Enumerable.Range(0, Cifar10.ImageBytes).Select(p => (byte)((g * 7 + p) % 251))))];

    private PrepareSpec WriteBatches()
    {
        File.WriteAllBytes(Path.Combine(input, "data_batch_1.bin"), Records(0, 3));
        File.WriteAllBytes(Path.Combine(input, "data_batch_2.bin"), Records(3, 2));
        File.WriteAllBytes(Path.Combine(input, "test_batch.bin"), Records(0, 2));
        return new PrepareSpec("cifar10", [input], output, ShardBytes: 2 * Cifar10.ImageBytes); // 2 images a shard
    }

    private static void RunAll(IPreparationPlan plan)
    {
        foreach (var task in plan.Tasks)
            plan.Run(task, null, CancellationToken.None);
        plan.Finish();
    }

    [Fact]
    public void Batches_become_chw_shards_with_labels_across_batch_files()
    {
        var plan = PreparationPlans.Create(WriteBatches());
        Assert.Equal(["train-00000", "train-00001", "train-00002", "test-00000"], plan.Tasks.Select(t => t.Id));
        RunAll(plan);
        using var train = ShardSet.Open(output, "train");
        Assert.Equal(5, train.Count);
        foreach (var g in new[] { 4, 0, 2, 3 }) // sample 2 closes batch 1, sample 3 opens batch 2 and shard 1
        {
            Assert.Equal(Records(g, 1)[1..], train.Record<byte>(g).ToArray());
            Assert.Equal(g % 10, train.Label(g));
        }
        var index = ShardIndex.Load(output);
        Assert.Equal((3, 32, 32), (index.Image!.Channels, index.Image.Height, index.Image.Width));
        Assert.Equal("truck", index.Image.LabelNames[9]);
        Assert.Equal(2, index.Splits["test"].Samples);
    }

    [Fact]
    public void A_batch_of_partial_records_is_named_with_the_expected_record_size()
    {
        WriteBatches();
        var path = Path.Combine(input, "data_batch_2.bin");
        File.WriteAllBytes(path, Records(3, 2)[..^5]);
        var error = Assert.Throws<InvalidDataException>(() => PreparationPlans.Create(new PrepareSpec("cifar10", [input], output)));
        Assert.Contains($"{path}: offset 3073: expected whole 3073-byte records", error.Message);
    }

    [Fact]
    public void A_task_that_fails_half_way_keeps_the_earlier_shard_and_leaves_no_temporary_file()
    {
        var plan = PreparationPlans.Create(WriteBatches());
        RunAll(plan);
        var shard = Path.Combine(output, "train-00001.shard"); // images 2 (batch 1) and 3 (batch 2)
        var before = File.ReadAllBytes(shard);
        var bad = Records(3, 2);
        bad[0] = 200; // label of image 3 out of range: found after image 2 was already written
        File.WriteAllBytes(Path.Combine(input, "data_batch_2.bin"), bad);
        var error = Assert.Throws<InvalidDataException>(() => plan.Run(plan.Tasks[1], null, CancellationToken.None));
        Assert.Contains("data_batch_2.bin: offset 0: expected a label 0-9, found 200", error.Message);
        Assert.Equal(before, File.ReadAllBytes(shard));
        Assert.DoesNotContain(Directory.GetFiles(output), f => f.Contains(".tmp"));
    }
}
