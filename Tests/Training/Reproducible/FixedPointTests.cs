using Pretrain.Shared.Recipes;
using Pretrain.Worker.Training.Reproducible;
using Xunit;

namespace Pretrain.Tests.Training.Reproducible;

/// <summary>The exact sum's arithmetic: order-independent, as close as float32 allows, and no overflow at any shard count a recipe allows.</summary>
public sealed class FixedPointTests
{
    /// <summary>Shard s's values: magnitudes over 12 orders, both signs, zeros and subnormal-adjacent ones.</summary>
    private static float[][] Shards(int shards, int length, int seed)
    {
        var random = new Random(seed);
        return [.. Enumerable.Range(0, shards).Select(_ => Enumerable.Range(0, length).Select(i =>
            i % 17 == 0 ? 0f : (float)((random.NextDouble() - 0.5) * Math.Pow(10, random.Next(-9, 3)))).ToArray())];
    }

    private static int ExponentOf(float[][] shards) =>
        FixedPoint.Exponent(shards.Max(s => s.Max(MathF.Abs)), shards.Length);

    private static long[] Sum(IEnumerable<float[]> shards, int f, int length)
    {
        var total = new long[length];
        foreach (var shard in shards) FixedPoint.Accumulate(shard, f, total);
        return total;
    }

    [Fact]
    public void The_sum_is_the_same_bits_in_any_order_and_any_split_into_ranks()
    {
        var shards = Shards(7, 1_001, seed: 1);
        var f = ExponentOf(shards);
        var inOrder = Sum(shards, f, 1_001);
        var reversed = Sum(shards.Reverse(), f, 1_001);
        // Two "ranks" of 3 and 4 shards each summing locally, then added as integers (what the allreduce does).
        var first = Sum(shards.Take(3), f, 1_001);
        var second = Sum(shards.Skip(3), f, 1_001);
        var split = first.Zip(second, (a, b) => a + b).ToArray();
        Assert.Equal(inOrder, reversed);
        Assert.Equal(inOrder, split);

        // The float32 sums in those orders do differ somewhere: that is what the fixed point is for.
        var floatInOrder = Enumerable.Range(0, 1_001).Select(i => shards.Aggregate(0f, (a, s) => a + s[i])).ToArray();
        var floatReversed = Enumerable.Range(0, 1_001).Select(i => shards.Reverse().Aggregate(0f, (a, s) => a + s[i])).ToArray();
        Assert.NotEqual(floatInOrder, floatReversed);
    }

    [Fact]
    public void The_result_is_the_true_sum_rounded_to_float32_within_the_scales_resolution()
    {
        var shards = Shards(7, 1_001, seed: 2);
        var f = ExponentOf(shards);
        var values = new float[1_001];
        FixedPoint.ToFloat(Sum(shards, f, 1_001), f, values);
        var resolution = 7 * Math.ScaleB(1.0, -f);                        // each of 7 values rounds by at most half of 2^-f
        for (var i = 0; i < values.Length; i++)
        {
            var exact = shards.Sum(s => (double)s[i]);                     // 7 floats sum exactly enough in double
            var tolerance = Math.Max(resolution, Math.Abs(exact) * Math.ScaleB(1.0, -24));  // plus float32's own half-ulp
            Assert.True(Math.Abs(values[i] - exact) <= tolerance, $"element {i}: {values[i]:R} for a true sum of {exact:R} (tolerance {tolerance:E2})");
        }
    }

    [Fact]
    public void The_vector_path_and_the_scalar_tail_round_alike()
    {
        // Lengths around the vector width: every element must convert as the scalar loop would.
        foreach (var length in new[] { 1, 7, 8, 15, 16, 17, 33, 1_000 })
        {
            var values = Shards(1, length, seed: length)[0];
            var f = FixedPoint.Exponent(values.Max(MathF.Abs), 1);
            var total = new long[length];
            FixedPoint.Accumulate(values, f, total);
            for (var i = 0; i < length; i++)
                Assert.Equal((long)Math.Round(values[i] * Math.ScaleB(1.0, f), MidpointRounding.ToEven), total[i]);
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(6)]
    [InlineData(ReproducibleRecipe.MaxShards)]
    public void At_the_largest_shard_count_a_recipe_allows_the_worst_case_sum_does_not_overflow(int shards)
    {
        // Every shard holds the largest magnitude with the same sign: the biggest total the scale must hold.
        foreach (var max in new[] { float.MaxValue, 1.9999999f, 1e-30f, -3.4e38f })
        {
            var f = FixedPoint.Exponent(MathF.Abs(max), shards);
            var total = new long[1];
            for (var s = 0; s < shards; s++) FixedPoint.Accumulate([max], f, total);
            Assert.InRange(Math.Abs(total[0]), 0, 1L << 51);
            var back = new float[1];
            FixedPoint.ToFloat(total, f, back);
            Assert.Equal((float)((double)max * shards), back[0]);        // exact: shards·max is what float32 says it is
        }
    }

    [Fact]
    public void A_zero_tensor_and_a_non_finite_maximum_are_handled_explicitly()
    {
        Assert.Equal(0, FixedPoint.Exponent(0f, 6));
        Assert.Equal(49, FixedPoint.Exponent(1f, 1));                     // 1 < 2^1: 50 bits − 1
        Assert.Equal(46, FixedPoint.Exponent(1f, 6));                     // ⌈log2 6⌉ = 3 bits of headroom
        Assert.Throws<ArgumentOutOfRangeException>(() => FixedPoint.Exponent(float.NaN, 6));
        Assert.Throws<ArgumentOutOfRangeException>(() => FixedPoint.Exponent(float.PositiveInfinity, 6));
    }
}

public sealed class ShardPlanTests
{
    [Fact]
    public void Ranks_take_consecutive_shards_differing_by_at_most_one()
    {
        Assert.Equal(new[] { (0, 1), (1, 2), (3, 1), (4, 2) }, Enumerable.Range(0, 4).Select(r => ShardPlan.For(12, 6, 4, r)).Select(p => (p.First, p.Count)));
        Assert.All(Enumerable.Range(0, 4), r => Assert.Equal(2, ShardPlan.For(12, 6, 4, r).ShardSize));
        Assert.Equal(2, ShardPlan.MostPerRank(6, 4));
        Assert.Equal(1, ShardPlan.MostPerRank(6, 6));
        Assert.Equal(6, ShardPlan.MostPerRank(6, 1));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(4)]
    [InlineData(7)]
    public void The_layout_names_every_shard_once_in_shard_order(int world)
    {
        var layout = ShardPlan.Layout(7, world).ToList();
        Assert.Equal(Enumerable.Range(0, 7), layout.Select(l => l.Shard));
        foreach (var (rank, local, shard) in layout)
            Assert.Equal(shard, ShardPlan.For(14, 7, world, rank).First + local);
    }

    [Fact]
    public void More_ranks_than_shards_is_refused_naming_both() =>
        Assert.Contains("6 micro-shards cannot give each of 7 ranks one",
            Assert.Throws<ArgumentOutOfRangeException>(() => ShardPlan.For(12, 6, 7, 0)).Message);
}
