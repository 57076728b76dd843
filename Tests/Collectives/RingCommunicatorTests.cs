using System.Diagnostics;
using Pretrain.Worker.Collectives;
using Xunit;

namespace Pretrain.Tests.Collectives;

/// <summary>
/// What the ring computes. Ranks of one process share a host, so these run over shared memory (the default, auto);
/// SharedMemoryTransportTests checks the same collectives over TCP against it, bit for bit.
/// </summary>
public sealed class RingCommunicatorTests
{
    public static TheoryData<int, int> WorldsAndLengths()
    {
        var data = new TheoryData<int, int>();
        foreach (var world in new[] { 1, 2, 3, 4 })
            foreach (var length in new[] { 0, 1, 3, 1_000_003 })
                data.Add(world, length);
        return data;
    }

    [Theory]
    [MemberData(nameof(WorldsAndLengths))]
    public async Task AllReduce_equals_the_elementwise_sum(int world, int length)
    {
        await using var harness = new RingHarness(world);
        var ring = await harness.ConnectAsync(1);
        var data = Enumerable.Range(0, world).Select(r => Enumerable.Range(0, length).Select(i => RingHarness.Value(r, i)).ToArray()).ToArray();

        await Task.WhenAll(ring.Select(c => c.AllReduceSumAsync(data[c.Rank])));

        var expected = Enumerable.Range(0, length).Select(i => Enumerable.Range(0, world).Sum(r => RingHarness.Value(r, i))).ToArray();
        foreach (var d in data) Assert.Equal(expected, d);
    }

    [Theory]
    [InlineData(2, 1)]
    [InlineData(3, 100_003)]
    [InlineData(4, 5)]
    public async Task An_int64_allreduce_sums_exactly_beyond_what_a_float_or_double_holds(int world, int length)
    {
        await using var harness = new RingHarness(world);
        var ring = await harness.ConnectAsync(1, new CollectiveOptions { SegmentBytes = 4096 });  // many segments per chunk
        // Values near 2^50 that differ in their lowest bits: a float (24 bits) or double (53) sum would lose them.
        long Value(int rank, int i) => ((1L << 50) + i * 7919L + rank) * (i % 2 == 0 ? 1 : -1);
        var data = Enumerable.Range(0, world).Select(r => Enumerable.Range(0, length).Select(i => Value(r, i)).ToArray()).ToArray();

        await Task.WhenAll(ring.Select(c => c.AllReduceSumAsync(data[c.Rank].AsMemory())));

        var expected = Enumerable.Range(0, length).Select(i => Enumerable.Range(0, world).Sum(r => Value(r, i))).ToArray();
        foreach (var d in data) Assert.Equal(expected, d);
    }

    [Fact]
    public async Task Consecutive_allreduces_with_a_small_segment_stay_in_step()
    {
        await using var harness = new RingHarness(3);
        var ring = await harness.ConnectAsync(1, new CollectiveOptions { SegmentBytes = 4096 });
        var data = ring.Select(_ => Enumerable.Repeat(1f, 50_001).ToArray()).ToArray();
        for (var call = 0; call < 3; call++)
            await Task.WhenAll(ring.Select(c => c.AllReduceSumAsync(data[c.Rank])));
        foreach (var d in data) Assert.All(d, v => Assert.Equal(27f, v));  // 1 -> 3 -> 9 -> 27
    }

    [Theory]
    [InlineData(3, 1)]
    [InlineData(4, 100_001)]
    public async Task AllGather_concatenates_every_rank_in_rank_order(int world, int length)
    {
        await using var harness = new RingHarness(world);
        var ring = await harness.ConnectAsync(1, new CollectiveOptions { SegmentBytes = 8192 });
        var results = ring.Select(_ => new float[world * length]).ToArray();

        await Task.WhenAll(ring.Select(c => c.AllGatherAsync(
            Enumerable.Range(0, length).Select(i => RingHarness.Value(c.Rank, i)).ToArray(), results[c.Rank])));

        var expected = Enumerable.Range(0, world).SelectMany(r => Enumerable.Range(0, length).Select(i => RingHarness.Value(r, i))).ToArray();
        foreach (var result in results) Assert.Equal(expected, result);
    }

    [Fact]
    public async Task Broadcast_from_a_non_zero_root_reaches_every_rank()
    {
        await using var harness = new RingHarness(4);
        var ring = await harness.ConnectAsync(1, new CollectiveOptions { SegmentBytes = 4096 });
        var payload = new byte[3_000_001];
        new Random(42).NextBytes(payload);
        var buffers = ring.Select(c => c.Rank == 2 ? (byte[])payload.Clone() : new byte[payload.Length]).ToArray();

        await Task.WhenAll(ring.Select(c => c.BroadcastAsync(buffers[c.Rank], root: 2)));

        foreach (var b in buffers) Assert.Equal(payload, b);
    }

    [Fact]
    public async Task Consecutive_generations_reuse_the_same_listeners()
    {
        await using var harness = new RingHarness(2);
        foreach (var generation in new long[] { 1, 2 })
        {
            var ring = await harness.ConnectAsync(generation);
            var data = ring.Select(c => new[] { c.Rank + 1f, generation }).ToArray();
            await Task.WhenAll(ring.Select(c => c.AllReduceSumAsync(data[c.Rank])));
            Assert.All(data, d => Assert.Equal(new[] { 3f, 2f * generation }, d));
            foreach (var c in ring) await c.DisposeAsync();
        }
    }

    [Fact]
    public async Task A_rank_that_finishes_first_and_leaves_does_not_fail_the_others()
    {
        await using var harness = new RingHarness(3);
        for (var generation = 1; generation <= 10; generation++)
        {
            var ring = await harness.ConnectAsync(generation);
            // Each rank disposes the moment its own last call returns, while the others still drain
            // that call's data: the end of every job and every generation.
            await Task.WhenAll(ring.Select(async c =>
            {
                await c.AllReduceSumAsync(new float[1 << 18]);
                await c.DisposeAsync();
            }));
        }
    }

    [Fact]
    public async Task Ranks_that_call_different_lengths_detect_the_desync()
    {
        await using var harness = new RingHarness(2);
        var ring = await harness.ConnectAsync(3, new CollectiveOptions { Timeout = TimeSpan.FromSeconds(2) });

        var calls = ring.Select(c => Capture(() => c.AllReduceSumAsync(new float[10 + c.Rank]))).ToArray();

        foreach (var error in await Task.WhenAll(calls))
            Assert.True(error.Message.Contains("desync"), error.Message);
    }

    internal static async Task<CollectiveException> Capture(Func<Task> call)
    {
        try { await call(); }
        catch (CollectiveException ex) { return ex; }
        throw new Xunit.Sdk.XunitException("the collective succeeded but should have failed");
    }

    internal static async Task<(CollectiveException Error, TimeSpan Elapsed)> Timed(Func<Task> call)
    {
        var clock = Stopwatch.StartNew();
        var error = await Capture(call);
        return (error, clock.Elapsed);
    }
}
