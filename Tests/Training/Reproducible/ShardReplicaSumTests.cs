using Pretrain.Worker.Collectives;
using Pretrain.Worker.Training.Reproducible;
using Xunit;
using static TorchSharp.torch;

namespace Pretrain.Tests.Training.Reproducible;

/// <summary>The micro-shard sum of global batch norm: threads that meet, a shard-order total, one statistics owner, and failures that end the wait.</summary>
public sealed class ShardReplicaSumTests
{
    private static readonly ShardPlan ThreeShards = ShardPlan.For(6, 3, 1, 0);

    [Fact]
    public void Shard_threads_meet_at_every_sum_and_each_gets_the_total_of_all_shards()
    {
        var sum = new ShardReplicaSum(new HostCommunicator(new SingleRank()), ThreeShards, TimeSpan.FromMinutes(1));
        var results = sum.Run(i =>
        {
            using var first = tensor(new float[] { i + 1, 10 * (i + 1) });
            sum.SumInPlace(first);
            using var second = tensor(new float[] { 100 * (i + 1) });             // a second round of the same threads
            sum.SumInPlace(second);
            return (First: first.data<float>().ToArray(), Second: second.data<float>()[0], Owner: sum.UpdatesStatistics);
        });
        Assert.All(results, r => Assert.Equal(new[] { 6f, 60f }, r.First));
        Assert.All(results, r => Assert.Equal(600f, r.Second));
        Assert.Equal(new[] { true, false, false }, results.Select(r => r.Owner));  // one thread moves the running statistics
        Assert.False(sum.UpdatesStatistics);                                       // and no thread outside a shard
    }

    [Fact]
    public void A_shard_that_fails_wakes_the_others_and_its_own_error_is_thrown()
    {
        var sum = new ShardReplicaSum(new HostCommunicator(new SingleRank()), ThreeShards, TimeSpan.FromMinutes(5));
        var started = DateTime.UtcNow;
        var error = Assert.Throws<InvalidOperationException>(() => sum.Run(i =>
        {
            if (i == 1) throw new InvalidOperationException("shard 1 broke");
            using var partial = tensor(new float[] { 1 });
            sum.SumInPlace(partial);                                                // would wait the 5 minutes for shard 1
            return 0;
        }));
        Assert.Equal("shard 1 broke", error.Message);
        Assert.True(DateTime.UtcNow - started < TimeSpan.FromMinutes(4), "the waiting shards were not woken by the failure");
    }

    [Fact]
    public void A_shard_that_never_comes_fails_the_sum_after_the_timeout_naming_it()
    {
        var sum = new ShardReplicaSum(new HostCommunicator(new SingleRank()), ThreeShards, TimeSpan.FromSeconds(1));
        using var together = new Barrier(2);          // shards 0 and 1 start their wait together: only shard 2 is missing when it ends
        using var gaveUp = new CountdownEvent(2);
        var error = Assert.Throws<CollectiveException>(() => sum.Run(i =>
        {
            if (i == 2)
            {
                // Computes, but never reaches the sum: busy until the other two have given up on it.
                if (!gaveUp.Wait(TimeSpan.FromMinutes(1))) throw new TimeoutException("shards 0 and 1 did not give up on shard 2 within a minute");
                return 0;
            }
            try
            {
                using var partial = tensor(new float[] { 1 });
                together.SignalAndWait(TimeSpan.FromMinutes(1));
                sum.SumInPlace(partial);
                return 0;
            }
            finally { gaveUp.Signal(); }
        }));
        Assert.Contains("micro-shard(s) 2 did not reach a global batch-norm sum within 1 s", error.Message);
    }
}
