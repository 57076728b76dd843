using Pretrain.Worker.Collectives;
using Pretrain.Worker.Training;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;

namespace Pretrain.Tests.Training;

public class GradientBucketsTests
{
    [Fact]
    public async Task Two_ranks_end_with_the_mean_gradient_and_the_mean_loss()
    {
        var group = new InProcessGroup(2);
        var results = await Task.WhenAll(Enumerable.Range(0, 2).Select(rank => Task.Factory.StartNew(() =>
        {
            using var a = new Parameter(zeros(2, 3));
            using var b = new Parameter(zeros(4));
            a.grad = full(2, 3, rank + 1.0f);       // rank 0: 1, rank 1: 2 → mean 1.5
            b.grad = arange(4, dtype: ScalarType.Float32) * (rank == 0 ? 1 : -1); // mean 0
            using var buckets = new GradientBuckets([a, b], group.Rank(rank));
            buckets.Pack(localLoss: rank == 0 ? 2.0 : 4.0);
            buckets.ReduceAsync(CancellationToken.None).GetAwaiter().GetResult();
            var loss = buckets.Unpack();
            return (loss, a: a.grad!.data<float>().ToArray(), b: b.grad!.data<float>().ToArray());
        }, TaskCreationOptions.LongRunning)));

        foreach (var (loss, a, b) in results)
        {
            Assert.Equal(3.0, loss, 6);
            Assert.All(a, x => Assert.Equal(1.5f, x));
            Assert.All(b, x => Assert.Equal(0f, x));
        }
    }

    [Fact]
    public void World_size_one_makes_no_buckets_and_passes_the_loss_through()
    {
        using var a = new Parameter(zeros(3));
        using var buckets = new GradientBuckets([a], new SingleRank());
        buckets.Pack(1.25);
        Assert.Equal(0, buckets.Count);
        Assert.Equal(1.25, buckets.Unpack());
    }
}
