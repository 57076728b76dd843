using Pretrain.Data.Random;
using Xunit;

namespace Pretrain.Tests.Data;

public class CounterRandomTests
{
    private const int Draws = 100_000;

    // Random123's tests/kat_vectors, the three "philox4x32 10" lines: counter (4 words), key (2), expected (4).
    [Theory]
    [InlineData(0x00000000u, 0x00000000u, 0x00000000u, 0x00000000u, 0x00000000u, 0x00000000u, 0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u)]
    [InlineData(0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu)]
    [InlineData(0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u, 0xa4093822u, 0x299f31d0u, 0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u)]
    public void Philox_matches_the_Random123_known_answers(
        uint c0, uint c1, uint c2, uint c3, uint k0, uint k1, uint e0, uint e1, uint e2, uint e3) =>
        Assert.Equal(new Philox4x32.Block(e0, e1, e2, e3), Philox4x32.Compute(new Philox4x32.Block(c0, c1, c2, c3), k0, k1));

    [Fact]
    public void A_draw_does_not_depend_on_call_order()
    {
        var rng = new CounterRandom(42, step: 7, sampleId: 1234, stream: 3);
        var forward = Enumerable.Range(0, 1000).Select(i => rng.Uniform(i)).ToArray();
        var backward = Enumerable.Range(0, 1000).Reverse().Select(i => new CounterRandom(42, 7, 1234, 3).Uniform(i)).Reverse().ToArray();
        Assert.Equal(forward, backward);
        Assert.Equal(rng.Bits(999), new CounterRandom(42, 7, 1234, 3).Bits(999)); // a fresh generator, straight to draw 999
    }

    [Fact]
    public void Each_key_coordinate_changes_the_stream()
    {
        var baseline = Stream(new CounterRandom(1, 2, 3, 4));
        foreach (var other in new[]
                 {
                     new CounterRandom(1UL << 40, 2, 3, 4), // the seed's high word counts too
                     new CounterRandom(1, 3, 3, 4), new CounterRandom(1, 2, 4, 4), new CounterRandom(1, 2, 3, 5),
                 })
        {
            var s = Stream(other);
            // Independent 32-bit streams agree at ~256/2^32 places; correlation of uniforms ~ 1/sqrt(256).
            Assert.True(baseline.Zip(s, (a, b) => a == b).Count(same => same) <= 1);
            Assert.InRange(Correlation(Units(baseline), Units(s)), -0.3, 0.3);
        }
    }

    [Fact]
    public void Uniforms_have_the_mean_and_variance_of_U01()
    {
        var rng = new CounterRandom(9, 0, 0);
        var u = Enumerable.Range(0, Draws).Select(i => (double)rng.Uniform(i)).ToArray();
        Assert.All(u, x => Assert.InRange(x, 0.0, 0.99999995));
        // Mean 1/2 with sd sqrt(1/12/n) ≈ 0.00091; variance 1/12 with sd sqrt(1/180/n) ≈ 0.00024. Bounds: 4 sd.
        Assert.InRange(u.Average(), 0.5 - 0.0037, 0.5 + 0.0037);
        Assert.InRange(u.Select(x => (x - 0.5) * (x - 0.5)).Average(), 1.0 / 12 - 0.001, 1.0 / 12 + 0.001);
        // Successive draws are uncorrelated (sd of r ≈ 1/sqrt(n) ≈ 0.0032).
        Assert.InRange(Correlation(u[..^1], u[1..]), -0.013, 0.013);
    }

    [Fact]
    public void Integers_cover_their_range_evenly()
    {
        var rng = new CounterRandom(5, 1, 2);
        var counts = new int[10];
        for (var i = 0; i < Draws; i++)
            counts[rng.Integer(i, 10, 20) - 10]++;
        // Each bin ~ Binomial(1e5, 0.1): mean 10,000, sd 95; 4 sd = 380.
        Assert.All(counts, c => Assert.InRange(c, 10_000 - 380, 10_000 + 380));
        Assert.Throws<ArgumentException>(() => rng.Integer(0, 3, 3));
    }

    [Fact]
    public void Normals_have_mean_0_and_variance_1()
    {
        var rng = new CounterRandom(3, 4, 5);
        var z = Enumerable.Range(0, Draws).Select(i => (double)rng.Normal(i)).ToArray();
        // Mean sd 1/sqrt(n) ≈ 0.0032; variance sd sqrt(2/n) ≈ 0.0045. Bounds: 4 sd.
        Assert.InRange(z.Average(), -0.013, 0.013);
        Assert.InRange(z.Select(x => x * x).Average(), 1 - 0.018, 1 + 0.018);
        Assert.InRange(z.Count(x => Math.Abs(x) < 1) / (double)Draws, 0.6827 - 0.006, 0.6827 + 0.006); // sd 0.0015
    }

    [Fact]
    public void Coordinates_beyond_the_counter_layout_are_refused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new CounterRandom(1, 1L << 32, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new CounterRandom(1, 0, -1));
        Assert.Throws<ArgumentOutOfRangeException>(() => new CounterRandom(1, 0, 0).Bits(4L << 32));
    }

    private static double[] Units(uint[] bits) => bits.Select(b => (double)CounterRandom.ToUnit(b)).ToArray();

    private static uint[] Stream(CounterRandom rng) => Enumerable.Range(0, 256).Select(i => rng.Bits(i)).ToArray();

    private static double Correlation(IReadOnlyList<double> a, IReadOnlyList<double> b)
    {
        double ma = a.Average(), mb = b.Average(), sab = 0, saa = 0, sbb = 0;
        for (var i = 0; i < a.Count; i++)
        {
            sab += (a[i] - ma) * (b[i] - mb);
            saa += (a[i] - ma) * (a[i] - ma);
            sbb += (b[i] - mb) * (b[i] - mb);
        }
        return sab / Math.Sqrt(saa * sbb);
    }
}
