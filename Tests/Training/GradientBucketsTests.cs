using Pretrain.Worker.Collectives;
using Pretrain.Worker.Training;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;

namespace Pretrain.Tests.Training;

public class GradientBucketsTests
{
    [Fact]
    public async Task Two_ranks_end_with_the_summed_gradient_loss_and_stop_votes()
    {
        var group = new InProcessGroup(2);
        var results = await Task.WhenAll(Enumerable.Range(0, 2).Select(rank => Task.Factory.StartNew(() =>
        {
            using var a = new Parameter(zeros(2, 3));
            using var b = new Parameter(zeros(4));
            a.grad = full(2, 3, rank + 1.0f);       // rank 0: 1, rank 1: 2 → sum 3
            b.grad = arange(4, dtype: ScalarType.Float32) * (rank == 0 ? 1 : -1); // sum 0
            using var buckets = new GradientBuckets([a, b]);
            var collectives = new HostCommunicator(group.Rank(rank));
            buckets.Pack(localLoss: rank == 0 ? 2.0 : 4.0, stopVote: rank == 1, collectives, leaveVote: rank == 0);
            buckets.ReduceAsync(collectives, CancellationToken.None).GetAwaiter().GetResult();
            var (loss, votes, leavers) = buckets.Unpack();
            return (loss, votes, leavers, a: a.grad!.data<float>().ToArray(), b: b.grad!.data<float>().ToArray());
        }, TaskCreationOptions.LongRunning)));

        foreach (var (loss, votes, leavers, a, b) in results)
        {
            Assert.Equal(6.0, loss, 6);
            Assert.Equal(2, votes);      // a leaver's vote is also a vote to stop
            Assert.Equal(1, leavers);
            Assert.All(a, x => Assert.Equal(3f, x));
            Assert.All(b, x => Assert.Equal(0f, x));
        }
    }

    [Fact]
    public async Task World_size_one_passes_the_loss_and_the_vote_through_without_touching_the_gradient()
    {
        using var a = new Parameter(zeros(3));
        a.grad = full(3, 2.5f);
        using var buckets = new GradientBuckets([a]);
        buckets.Pack(1.25, stopVote: true, new HostCommunicator(new SingleRank()));
        await buckets.ReduceAsync(new HostCommunicator(new SingleRank()), CancellationToken.None);
        Assert.Equal((1.25, 1, 0), buckets.Unpack());
        Assert.All(a.grad!.data<float>().ToArray(), x => Assert.Equal(2.5f, x));
    }
}
