using System.Net;
using Pretrain.Worker.Collectives;
using Xunit;
using static Pretrain.Tests.Collectives.RingCommunicatorTests;

namespace Pretrain.Tests.Collectives;

/// <summary>
/// How a ring fails. Bounds here are the behaviour, not the machine's speed: "fast" means well before the timeout that
/// would otherwise fire (the timeouts are long, so a loaded machine cannot blur the two), "at once" means the call's
/// task is already faulted when it returns (no network wait at all), and ordering waits on observable state, not sleeps.
/// Deaths and stalls are tried over TCP and over shared memory (ranks of one process share a host): the same errors.
/// </summary>
public sealed class RingFailureTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    /// <summary>Waits (bounded) until <paramref name="condition"/> holds.</summary>
    private static async Task UntilAsync(Func<bool> condition, string what)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(20);
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, $"waited 20 s for {what}");
            await Task.Delay(5);
        }
    }

    /// <summary>The options of a ring over <paramref name="transport"/>, checked once connected.</summary>
    private static CollectiveOptions Over(TransportPolicy transport, TimeSpan timeout) => new() { Timeout = timeout, Transport = transport };

    private static void AssertLinks(TransportPolicy transport, IEnumerable<RingCommunicator> ring) =>
        Assert.All(ring, c => Assert.Equal(transport == TransportPolicy.Tcp ? LinkTransport.Tcp : LinkTransport.SharedMemory, c.SendTransport));

    [Theory]
    [InlineData(2, false, TransportPolicy.Tcp)]
    [InlineData(4, false, TransportPolicy.Tcp)]
    [InlineData(2, true, TransportPolicy.Tcp)]
    [InlineData(4, true, TransportPolicy.Tcp)]
    [InlineData(2, false, TransportPolicy.Auto)]
    [InlineData(4, false, TransportPolicy.Auto)]
    [InlineData(2, true, TransportPolicy.Auto)]
    [InlineData(4, true, TransportPolicy.Auto)]
    public async Task Survivors_fail_fast_when_a_peer_dies(int world, bool crash, TransportPolicy transport)
    {
        await using var harness = new RingHarness(world);
        var ring = await harness.ConnectAsync(7, Over(transport, Timeout));
        AssertLinks(transport, ring);
        var victim = world - 2;  // rank 0 and the last rank then only hear of it second-hand
        var survivors = ring.Where(c => c.Rank != victim).ToArray();

        var calls = survivors.Select(c => Timed(() => c.AllReduceSumAsync(new float[4 << 20]))).ToArray();
        await UntilAsync(() => survivors.All(c => c.InCall), "the survivors to be inside the allreduce");
        if (crash) ring[victim].CloseAbruptly();  // sockets close, nothing said: a killed process
        else await ring[victim].DisposeAsync();  // the victim's owner gives up on the generation

        var port = harness.Listeners[victim].Port;
        var outcomes = await Task.WhenAll(calls);
        var all = string.Join("\n", outcomes.Select(o => $"{o.Elapsed.TotalMilliseconds:0} ms: {o.Error.Message}"));
        foreach (var (error, elapsed) in outcomes)
        {
            Assert.True(error.PeerRank == victim, all);
            Assert.True(elapsed < Timeout / 2, $"took {elapsed}: the failure was found by the timeout, not by the closed link");
            Assert.Equal(victim, error.PeerRank);
            Assert.Equal(7, error.Generation);
            Assert.Contains($"allreduce (generation 7) lost worker-{victim} (rank {victim}, 127.0.0.1:{port})", error.Message);
        }
        // A failed communicator is finished: the next call fails at once, naming the same peer.
        var again = survivors[0].AllReduceSumAsync(new float[1]);
        Assert.True(again.IsFaulted, "the next call waited on the network");
        Assert.Equal(victim, Assert.IsType<CollectiveException>(again.Exception!.InnerException).PeerRank);
    }

    [Theory]
    [InlineData(TransportPolicy.Tcp)]
    [InlineData(TransportPolicy.Auto)]
    public async Task Survivors_time_out_when_a_peer_stalls(TransportPolicy transport)
    {
        await using var harness = new RingHarness(3);
        var timeout = TimeSpan.FromSeconds(1);
        var ring = await harness.ConnectAsync(2, Over(transport, timeout));
        AssertLinks(transport, ring);

        // Rank 1 stays connected but never joins the call.
        var calls = ring.Where(c => c.Rank != 1).Select(c => Timed(() => c.AllReduceSumAsync(new float[1000]))).ToArray();

        foreach (var (error, elapsed) in await Task.WhenAll(calls))
        {
            Assert.True(elapsed >= timeout - TimeSpan.FromMilliseconds(50), $"gave up after {elapsed}, before the {timeout} timeout");
            Assert.True(elapsed < timeout * 20, $"took {elapsed}: the timeout did not fire");
            Assert.Contains("no data for", error.Message);
        }
    }

    [Fact]
    public async Task Canceling_a_collective_fails_it_on_every_rank()
    {
        await using var harness = new RingHarness(2);
        var ring = await harness.ConnectAsync(1, new CollectiveOptions { Timeout = Timeout });
        using var cancel = new CancellationTokenSource(TimeSpan.FromMilliseconds(100));

        // Rank 1 has not joined yet, so rank 0 waits inside the allreduce until its caller cancels.
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => ring[0].AllReduceSumAsync(new float[100], cancel.Token));
        await UntilAsync(() => ring[1].FailureReason != null, "rank 0's notice to reach rank 1");

        var call = ring[1].AllReduceSumAsync(new float[100]);
        Assert.True(call.IsFaulted, "rank 1 did not know before its call");
        var error = Assert.IsType<CollectiveException>(call.Exception!.InnerException);
        Assert.Equal(0, error.PeerRank);
        Assert.Contains("canceled by its caller", error.Message);
    }

    [Fact]
    public async Task A_stale_generation_handshake_is_rejected()
    {
        await using var harness = new RingHarness(2);
        var current = new RingCommunicator(harness.Listeners[1], 5, 1, harness.Peers, RingHarness.Key);  // rank 1 is at generation 5
        harness.Communicators.Add(current);
        var stale = new RingCommunicator(harness.Listeners[0], 4, 0, harness.Peers, RingHarness.Key, new CollectiveOptions { Timeout = Timeout });
        harness.Communicators.Add(stale);

        var (error, elapsed) = await Timed(() => stale.ConnectAsync());

        Assert.Contains("StaleGeneration", error.Message);
        Assert.Equal(1, error.PeerRank);
        Assert.True(elapsed < Timeout, $"a stale generation is final, no retries until the timeout: {elapsed}");
        Assert.Equal(1, harness.Listeners[1].Rejected);
    }

    [Fact]
    public async Task A_peer_that_never_comes_fails_the_connect_within_the_timeout()
    {
        await using var harness = new RingHarness(2);
        var lonely = new RingCommunicator(harness.Listeners[0], 1, 0, harness.Peers, RingHarness.Key, new CollectiveOptions { Timeout = TimeSpan.FromSeconds(1) });
        harness.Communicators.Add(lonely);

        var (error, elapsed) = await Timed(() => lonely.ConnectAsync());

        Assert.Equal(1, error.PeerRank);
        Assert.Contains("worker-1", error.PeerName);
        Assert.True(elapsed >= TimeSpan.FromSeconds(0.9), $"gave up after {elapsed}, before its 1 s timeout");
        Assert.True(elapsed < TimeSpan.FromSeconds(20), $"took {elapsed}: the timeout did not bound the wait");
    }

    [Fact]
    public async Task A_connection_that_is_not_a_data_plane_handshake_is_rejected()
    {
        using var listener = new DataPlaneListener(IPAddress.Loopback);
        using var client = new System.Net.Sockets.TcpClient();
        await client.ConnectAsync(IPAddress.Loopback, listener.Port);
        await client.GetStream().WriteAsync(new byte[RingAuthentication.HelloSize]);
        var reply = new byte[4];
        await client.GetStream().ReadExactlyAsync(reply);
        Assert.Equal(HandshakeStatus.BadProtocol, (HandshakeStatus)BitConverter.ToInt32(reply));
    }
}
