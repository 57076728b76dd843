using Pretrain.Data.Images;
using Pretrain.Data.Preparation;
using Pretrain.Data.Shards;
using Pretrain.Tests.Training;
using Xunit;

namespace Pretrain.Tests.Data.Images;

/// <summary>The real Fashion-MNIST, prepared once for the class (~2 s): 20,000 images a shard, so train is 3 shards.</summary>
public sealed class PreparedFashionMnist
{
    public const string Folder = "/usr/share/datasets/fashion-mnist";
    public const long ShardBytes = 20_000 * 784;

    public PreparedFashionMnist()
    {
        Output = TestRecipes.TemporaryDirectory();
        Spec = new PrepareSpec("fashion-mnist", [Folder], Output, ShardBytes: ShardBytes);
        Plan = PreparationPlans.Create(Spec);
        foreach (var task in Plan.Tasks)
            Plan.Run(task, null, CancellationToken.None);
        Plan.Finish();
    }

    public string Output { get; }
    public PrepareSpec Spec { get; }
    public IPreparationPlan Plan { get; }
}

public class FashionMnistTests(PreparedFashionMnist prepared) : IClassFixture<PreparedFashionMnist>
{
    [Fact]
    public void Tasks_are_shards_of_each_split_as_the_dataset_defines_them()
    {
        Assert.Equal(["train-00000", "train-00001", "train-00002", "test-00000"], prepared.Plan.Tasks.Select(t => t.Id));
        Assert.Equal(60_000L * 784, prepared.Plan.Tasks.Where(t => t.Id.StartsWith("train")).Sum(t => t.Bytes));
        Assert.All(prepared.Plan.Tasks, t => Assert.True(prepared.Plan.IsDone(t)));
        var index = ShardIndex.Load(prepared.Output);
        Assert.Equal(60_000, index.Splits["train"].Samples);
        Assert.Equal(10_000, index.Splits["test"].Samples);
        Assert.Equal(("images", "uint8", "fashion-mnist"), (index.Kind, index.DType, index.Source));
        Assert.Equal((1, 28, 28), (index.Image!.Channels, index.Image.Height, index.Image.Width));
        Assert.Equal("Ankle boot", index.Image.LabelNames[9]);
    }

    [Fact]
    public void Samples_read_back_as_the_idx_files_hold_them_across_shard_boundaries()
    {
        var (count, _, _, pixels) = IdxFile.ReadImages(Path.Combine(PreparedFashionMnist.Folder, "t10k-images-idx3-ubyte.gz"));
        var labels = IdxFile.ReadLabels(Path.Combine(PreparedFashionMnist.Folder, "t10k-labels-idx1-ubyte.gz"));
        using var test = ShardSet.Open(prepared.Output, "test");
        Assert.Equal(count, test.Count);
        foreach (var id in new[] { 0, 1, 4321, 9999 })
        {
            Assert.Equal(pixels.AsSpan(id * 784, 784).ToArray(), test.Record<byte>(id).ToArray());
            Assert.Equal(labels[id], test.Label(id));
        }
        using var train = ShardSet.Open(prepared.Output, "train");
        Assert.Equal(9, train.Label(0)); // Fashion-MNIST's first training image is an ankle boot
        Assert.Equal(train.Record<byte>(20_000).ToArray(), train.Locate(20_000, out var local).Record<byte>(local).ToArray());
        Assert.Equal(0, local); // first sample of the second shard
    }

    [Fact]
    public void Running_a_task_again_writes_a_byte_identical_shard()
    {
        var again = TestRecipes.TemporaryDirectory();
        var plan = PreparationPlans.Create(prepared.Spec with { Output = again });
        var task = plan.Tasks.Single(t => t.Id == "test-00000");
        Assert.False(plan.IsDone(task));
        long reported = 0;
        plan.Run(task, new Progress(b => reported = b), CancellationToken.None);
        Assert.Equal(task.Bytes, reported);
        Assert.Equal(File.ReadAllBytes(Path.Combine(prepared.Output, "test-00000.shard")), File.ReadAllBytes(Path.Combine(again, "test-00000.shard")));
    }

    [Fact]
    public void A_damaged_shard_is_not_done()
    {
        var copy = TestRecipes.TemporaryDirectory();
        var source = Path.Combine(prepared.Output, "test-00000.shard");
        var bytes = File.ReadAllBytes(source);
        bytes[^1] ^= 0xff;
        File.WriteAllBytes(Path.Combine(copy, "test-00000.shard"), bytes);
        var plan = PreparationPlans.Create(prepared.Spec with { Output = copy });
        Assert.False(plan.IsDone(plan.Tasks.Single(t => t.Id == "test-00000")));
    }

    private sealed class Progress(Action<long> report) : IProgress<long>
    {
        public void Report(long value) => report(value);
    }
}
