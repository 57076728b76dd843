using Pretrain.Worker.Collectives;
using Xunit;

namespace Pretrain.Tests.Collectives;

/// <summary>
/// The shared-memory transport (issue 15): ranks of one host (here: one process, so one host id) put each link's data
/// through a mapped ring and compute bit for bit what the TCP ring computes — through 64 KiB rings that every call wraps
/// many times; the rings' files are gone once connected and their mappings once disposed; TLS (TlsRingTests),
/// <c>--transport tcp</c> and another host keep TCP. A killed or frozen peer: RingFailureTests, over both transports.
/// </summary>
public sealed class SharedMemoryTransportTests : IDisposable
{
    const int SmallRing = 64 << 10;
    static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    // This test's rings only: other tests make theirs in /dev/shm at the same time.
    readonly string _folder = Directory.CreateDirectory(Path.Combine(Directory.Exists("/dev/shm") ? "/dev/shm" : Path.GetTempPath(),
        $"pretrain-test-{Guid.NewGuid():N}")).FullName;

    public void Dispose()
    {
        try { Directory.Delete(_folder, recursive: true); }
        catch (IOException) { }
    }

    CollectiveOptions Shared() => new() { SharedMemoryDirectory = _folder, SharedMemoryRingBytes = SmallRing, Timeout = Timeout };

    static CollectiveOptions Tcp() => new() { Transport = TransportPolicy.Tcp, Timeout = Timeout };

    public static TheoryData<int, int> WorldsAndLengths()
    {
        var data = new TheoryData<int, int>();
        foreach (var world in new[] { 2, 4 })
            foreach (var length in new[] { 1, 1000, 100_003, 1_000_003 })   // up to 4 MB: 60 turns of a 64 KiB ring
                data.Add(world, length);
        return data;
    }

    /// <summary>Random values: the rounding of each sum depends on its order, which both transports follow, so the bits must agree.</summary>
    static float[][] Inputs(int world, int length, int seed)
    {
        var random = new Random(seed);
        return [.. Enumerable.Range(0, world).Select(_ => Enumerable.Range(0, length).Select(_ => random.NextSingle() * 2 - 1).ToArray())];
    }

    /// <summary>One call on every rank of a fresh ring whose links must all be <paramref name="expected"/>.</summary>
    static async Task RunAsync(int world, CollectiveOptions options, LinkTransport expected, Func<RingCommunicator, Task> call)
    {
        await using var harness = new RingHarness(world);
        var ring = await harness.ConnectAsync(1, options);
        Assert.All(ring, c => Assert.Equal(expected, c.SendTransport));
        Assert.All(ring, c => Assert.Equal(expected, c.ReceiveTransport));
        await Task.WhenAll(ring.Select(call));
    }

    [Theory]
    [MemberData(nameof(WorldsAndLengths))]
    public async Task AllReduce_over_shared_memory_equals_tcp_bit_for_bit(int world, int length)
    {
        var input = Inputs(world, length, seed: world * 1_000_003 + length);
        var overTcp = input.Select(d => (float[])d.Clone()).ToArray();
        var overShm = input.Select(d => (float[])d.Clone()).ToArray();

        await RunAsync(world, Tcp(), LinkTransport.Tcp, c => c.AllReduceSumAsync(overTcp[c.Rank]));
        await RunAsync(world, Shared(), LinkTransport.SharedMemory, c => c.AllReduceSumAsync(overShm[c.Rank]));

        for (var r = 0; r < world; r++)
        {
            Assert.Equal(overTcp[r], overShm[r]);
            Assert.Equal(overShm[0], overShm[r]);
        }
        var i = length / 2;
        Assert.Equal(input.Sum(d => (double)d[i]), overShm[0][i], 1e-5);
    }

    [Theory]
    [InlineData(2, 1)]
    [InlineData(2, 300_001)]
    [InlineData(4, 33_333)]
    [InlineData(4, 300_001)]
    public async Task AllGather_over_shared_memory_equals_tcp(int world, int length)
    {
        var input = Inputs(world, length, seed: length);
        var overTcp = Enumerable.Range(0, world).Select(_ => new float[world * length]).ToArray();
        var overShm = Enumerable.Range(0, world).Select(_ => new float[world * length]).ToArray();

        await RunAsync(world, Tcp(), LinkTransport.Tcp, c => c.AllGatherAsync(input[c.Rank], overTcp[c.Rank]));
        await RunAsync(world, Shared(), LinkTransport.SharedMemory, c => c.AllGatherAsync(input[c.Rank], overShm[c.Rank]));

        var expected = input.SelectMany(d => d).ToArray();
        for (var r = 0; r < world; r++)
        {
            Assert.Equal(expected, overTcp[r]);
            Assert.Equal(expected, overShm[r]);
        }
    }

    [Theory]
    [InlineData(2, 1)]
    [InlineData(2, 65_537)]
    [InlineData(4, 3)]
    [InlineData(4, 1_000_003)]
    public async Task Broadcast_over_shared_memory_equals_tcp(int world, int length)
    {
        var payload = new byte[length];
        new Random(length).NextBytes(payload);
        var root = world - 1;
        byte[][] Buffers() => [.. Enumerable.Range(0, world).Select(r => r == root ? (byte[])payload.Clone() : new byte[length])];
        var (overTcp, overShm) = (Buffers(), Buffers());

        await RunAsync(world, Tcp(), LinkTransport.Tcp, c => c.BroadcastAsync(overTcp[c.Rank], root));
        await RunAsync(world, Shared(), LinkTransport.SharedMemory, c => c.BroadcastAsync(overShm[c.Rank], root));

        Assert.All(overTcp, b => Assert.Equal(payload, b));
        Assert.All(overShm, b => Assert.Equal(payload, b));
    }

    /// <summary>
    /// After a broadcast of an odd length the stream is no longer aligned in the ring, so elements of the next sums lie
    /// across its end: each must still be added whole, fp32 and int64, with many segments per chunk.
    /// </summary>
    [Fact]
    public async Task Sums_after_odd_broadcasts_add_the_elements_split_by_the_ring_end()
    {
        await using var harness = new RingHarness(3);
        var ring = await harness.ConnectAsync(1, Shared() with { SegmentBytes = 4096 });
        Assert.All(ring, c => Assert.Equal(LinkTransport.SharedMemory, c.SendTransport));

        foreach (var odd in new[] { 3, 65_537, 7, 1 })
        {
            var bytes = ring.Select(c => c.Rank == 1 ? Enumerable.Range(0, odd).Select(i => (byte)(i * 7)).ToArray() : new byte[odd]).ToArray();
            await Task.WhenAll(ring.Select(c => c.BroadcastAsync(bytes[c.Rank], root: 1)));
            Assert.All(bytes, b => Assert.Equal(bytes[1], b));

            var floats = ring.Select(c => Enumerable.Range(0, 50_001).Select(i => RingHarness.Value(c.Rank, i)).ToArray()).ToArray();
            await Task.WhenAll(ring.Select(c => c.AllReduceSumAsync(floats[c.Rank])));
            var expected = Enumerable.Range(0, 50_001).Select(i => Enumerable.Range(0, 3).Sum(r => RingHarness.Value(r, i))).ToArray();
            Assert.All(floats, f => Assert.Equal(expected, f));

            long Big(int rank, int i) => ((1L << 50) + i * 7919L + rank) * (i % 2 == 0 ? 1 : -1);
            var longs = ring.Select(c => Enumerable.Range(0, 30_001).Select(i => Big(c.Rank, i)).ToArray()).ToArray();
            await Task.WhenAll(ring.Select(c => c.AllReduceSumAsync(longs[c.Rank].AsMemory())));
            var sums = Enumerable.Range(0, 30_001).Select(i => Enumerable.Range(0, 3).Sum(r => Big(r, i))).ToArray();
            Assert.All(longs, l => Assert.Equal(sums, l));
        }
    }

    [Fact]
    public async Task Ring_files_are_removed_once_connected_and_unmapped_once_disposed()
    {
        var harness = new RingHarness(3);
        try
        {
            var ring = await harness.ConnectAsync(1, Shared());
            Assert.All(ring, c => Assert.Equal(LinkTransport.SharedMemory, c.ReceiveTransport));
            Assert.Empty(Directory.GetFileSystemEntries(_folder));                 // unlinked as soon as both ends mapped them
            var mapped = Mappings();
            Assert.Equal(3, mapped.Select(m => m[m.IndexOf(_folder, StringComparison.Ordinal)..]).Distinct().Count());   // one ring per link
            Assert.All(mapped, m => Assert.EndsWith("(deleted)", m));
            await Task.WhenAll(ring.Select(c => c.AllReduceSumAsync(new float[100_000])));
        }
        finally
        {
            await harness.DisposeAsync();
        }
        Assert.Empty(Mappings());
        Assert.Empty(Directory.GetFileSystemEntries(_folder));
    }

    /// <summary>The lines of /proc/self/maps that map a file of this test's folder.</summary>
    string[] Mappings() => [.. File.ReadAllLines("/proc/self/maps").Where(l => l.Contains(_folder, StringComparison.Ordinal))];

    [Fact]
    public async Task A_rank_on_transport_tcp_keeps_both_its_links_on_tcp_and_the_others_share_memory()
    {
        await using var harness = new RingHarness(3);
        var ring = await harness.ConnectAsync(1, r => r == 1 ? Tcp() : Shared());

        Assert.Equal([LinkTransport.Tcp, LinkTransport.Tcp, LinkTransport.SharedMemory], ring.Select(c => c.SendTransport));       // 0->1, 1->2, 2->0
        Assert.Equal([LinkTransport.SharedMemory, LinkTransport.Tcp, LinkTransport.Tcp], ring.Select(c => c.ReceiveTransport));    // 2->0, 0->1, 1->2
        var data = ring.Select(c => Enumerable.Range(0, 200_001).Select(i => RingHarness.Value(c.Rank, i)).ToArray()).ToArray();
        await Task.WhenAll(ring.Select(c => c.AllReduceSumAsync(data[c.Rank])));
        var expected = Enumerable.Range(0, 200_001).Select(i => Enumerable.Range(0, 3).Sum(r => RingHarness.Value(r, i))).ToArray();
        Assert.All(data, d => Assert.Equal(expected, d));
    }

    [Fact]
    public async Task Ranks_of_different_hosts_connect_over_tcp()
    {
        byte[][] hosts = [HostIdentity.Of("boot", "net:[1]"), HostIdentity.Of("boot", "net:[1]"), HostIdentity.Of("boot", "net:[2]")];
        await using var harness = new RingHarness(3);
        var ring = await harness.ConnectAsync(1, r => Shared() with { HostIdentityOverride = hosts[r] });

        Assert.Equal([LinkTransport.SharedMemory, LinkTransport.Tcp, LinkTransport.Tcp], ring.Select(c => c.SendTransport));       // 0->1 share a host
        var data = ring.Select(c => new[] { c.Rank + 1f }).ToArray();
        await Task.WhenAll(ring.Select(c => c.AllReduceSumAsync(data[c.Rank])));
        Assert.All(data, d => Assert.Equal(6f, d[0]));
    }

    [Fact]
    public void A_host_id_is_the_boot_and_the_network_namespace()
    {
        Assert.NotEqual(HostIdentity.Of("b1", "net:[4026531840]"), HostIdentity.Of("b1", "net:[4026532000]"));
        Assert.NotEqual(HostIdentity.Of("b1", "net:[4026531840]"), HostIdentity.Of("b2", "net:[4026531840]"));
        Assert.Equal(HostIdentity.Of("b1", "net:[4026531840]"), HostIdentity.Of("b1\n", "net:[4026531840]"));
        if (!OperatingSystem.IsLinux()) return;
        var mine = HostIdentity.Of(File.ReadAllText("/proc/sys/kernel/random/boot_id"), new FileInfo("/proc/self/ns/net").LinkTarget!);
        Assert.Equal(mine, HostIdentity.Current);
    }
}
