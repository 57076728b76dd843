using Pretrain.Data.Sampling;
using Xunit;

namespace Pretrain.Tests.Data;

public class GlobalBatchSamplerTests
{
    private const int Samples = 50, Batch = 12; // 50 is not a multiple of 12: steps cross epoch boundaries

    private static long[] GlobalBatch(GlobalBatchSampler sampler, long step)
    {
        var ids = new long[Batch];
        sampler.GlobalBatchOf(step, ids);
        return ids;
    }

    [Fact]
    public void Order_is_a_pure_function_of_seed_and_epoch()
    {
        Assert.Equal(GlobalBatchSampler.Permutation(7, 3, 1000), GlobalBatchSampler.Permutation(7, 3, 1000));
        Assert.NotEqual(GlobalBatchSampler.Permutation(7, 3, 1000), GlobalBatchSampler.Permutation(8, 3, 1000));
        Assert.NotEqual(GlobalBatchSampler.Permutation(7, 3, 1000), GlobalBatchSampler.Permutation(7, 4, 1000));
    }

    [Fact]
    public void Order_is_pinned_so_a_library_change_cannot_alter_resumed_jobs() =>
        Assert.Equal("4,0,3,6,9,2,5,1,7,8", string.Join(",", GlobalBatchSampler.Permutation(42, 0, 10)));

    [Fact]
    public void Every_epoch_order_is_a_permutation()
    {
        for (var epoch = 0; epoch < 5; epoch++)
            Assert.Equal(Enumerable.Range(0, 997), GlobalBatchSampler.Permutation(1, epoch, 997).Order());
    }

    [Fact]
    public void Sampler_reproduces_its_results_in_any_call_order()
    {
        var forward = new GlobalBatchSampler(5, Samples, Batch);
        var backward = new GlobalBatchSampler(5, Samples, Batch);
        var steps = Enumerable.Range(0, 20).ToArray();
        var a = steps.Select(s => GlobalBatch(forward, s)).ToArray();
        var b = steps.Reverse().Select(s => GlobalBatch(backward, s)).Reverse().ToArray();
        Assert.Equal(a, b);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    [InlineData(6)]
    public void Ranks_parts_are_disjoint_and_union_to_the_global_batch(int worldSize)
    {
        var sampler = new GlobalBatchSampler(11, 1000, Batch);
        for (var step = 0; step < 10; step++)
        {
            var parts = Enumerable.Range(0, worldSize).Select(rank =>
            {
                var ids = new long[Batch / worldSize];
                sampler.RankBatch(step, rank, worldSize, ids);
                return ids;
            }).ToArray();
            var union = parts.SelectMany(p => p).ToArray();
            Assert.Equal(Batch, union.Distinct().Count()); // disjoint: 1000 samples, no repeats within an epoch
            Assert.Equal(GlobalBatch(sampler, step), union); // in rank order, the global batch itself
        }
    }

    [Fact]
    public void Global_batch_is_the_same_for_world_sizes_1_2_3()
    {
        var sampler = new GlobalBatchSampler(3, Samples, Batch);
        for (var step = 0; step < 12; step++)
        {
            var expected = GlobalBatch(sampler, step);
            foreach (var w in new[] { 2, 3 })
            {
                var union = Enumerable.Range(0, w).SelectMany(rank =>
                {
                    var ids = new long[Batch / w];
                    new GlobalBatchSampler(3, Samples, Batch).RankBatch(step, rank, w, ids);
                    return ids;
                });
                Assert.Equal(expected, union);
            }
        }
    }

    [Fact]
    public void Steps_crossing_an_epoch_boundary_finish_one_epoch_and_start_the_next()
    {
        var sampler = new GlobalBatchSampler(9, Samples, Batch);
        // Step 4 covers positions 48..59: the last 2 of epoch 0 and the first 10 of epoch 1.
        var batch = GlobalBatch(sampler, 4);
        var epoch0 = GlobalBatchSampler.Permutation(9, 0, Samples);
        var epoch1 = GlobalBatchSampler.Permutation(9, 1, Samples);
        Assert.Equal(epoch0[48..].Select(i => (long)i).Concat(epoch1[..10].Select(i => (long)i)), batch);
        Assert.Equal(0, sampler.EpochOf(4));
        Assert.Equal(1, sampler.EpochOf(5));
        // Each epoch covers every sample exactly once over the concatenated order.
        var positions = Enumerable.Range(0, Samples).Select(i => sampler.At(Samples + i));
        Assert.Equal(Enumerable.Range(0, Samples).Select(i => (long)i), positions.Order());
    }

    [Fact]
    public void World_size_that_does_not_divide_the_batch_is_refused() =>
        Assert.Throws<ArgumentException>(() => new GlobalBatchSampler(1, Samples, Batch).RankBatch(0, 0, 5, new long[2]));
}
