using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Pretrain.Tests.Collectives;
using Pretrain.Worker.Collectives;
using Xunit;

namespace Pretrain.Tests.Fuzz;

/// <summary>
/// The data plane's wire formats under mutated input (issue 14, item 5): the handshake, the call header, the
/// failure notice and the transport negotiation's messages (issue 15) each read 10,000 mutations of a valid frame with
/// a verdict and no other exception; and a live
/// listener takes 2,000 mutated handshakes on real sockets (a fifth of the count: each is a connection; 20,000 under
/// `./test.sh --long`), answers or closes each in bounded time and memory, gives none a slot, and still forms a real
/// ring afterwards.
/// </summary>
public sealed class WireFuzzTests
{
    sealed class Refused(string why) : Exception(why);

    static byte[] Hello(long generation = 1, int sender = 0, int target = 1, int world = 2)
    {
        var hello = new byte[RingAuthentication.HelloSize];
        new Handshake(generation, sender, target, world).Write(hello);
        return hello;
    }

    // Magic bytes, the protocol versions, small and edge integers.
    const string Significant = "PTDPLCNF\x01\x02\x03\x00\xFF\x7F\x80\x16";

    [Fact]
    public void Mutated_handshakes_parse_or_are_refused()
    {
        Mutations.Fuzz<Refused>(Hello(), Significant, seed: 1401, input =>
        {
            if (input.Length < Handshake.Size || Handshake.TryRead(input) is not { } hs) throw new Refused("not a handshake");
            // A parsed handshake carries whatever numbers it says; the listener compares them with what it expects.
            Assert.Equal(BinaryPrimitives.ReadInt64LittleEndian(input.AsSpan(8)), hs.Generation);
        });
    }

    [Fact]
    public void Mutated_call_headers_are_matched_or_named_as_different()
    {
        var valid = new byte[WireFormat.CallHeaderSize];
        WireFormat.WriteCallHeader(valid, CollectiveOp.AllReduceSum, 3, 17, 4096);
        Mutations.Fuzz<Refused>(valid, Significant, seed: 1402, input =>
        {
            if (input.Length != WireFormat.CallHeaderSize) throw new Refused("a call header is read as exactly 32 bytes");
            if (WireFormat.CheckCallHeader(input, CollectiveOp.AllReduceSum, 3, 17, 4096) is { } why)
            {
                Assert.False(string.IsNullOrWhiteSpace(why));
                throw new Refused(why);
            }
        });
    }

    [Fact]
    public void Mutated_failure_notices_are_read_or_refused_before_any_allocation()
    {
        var valid = WireFormat.EncodeNotice(2, "connection reset by peer", timedOut: true);
        Mutations.Fuzz<Refused>(valid, Significant, seed: 1403, input =>
        {
            if (WireFormat.ReadNoticeHeader(input, out var rank, out var length, out _) is { } why) throw new Refused(why);
            Assert.InRange(length, 0, WireFormat.MaxNoticeText);            // what the reader will allocate
            _ = Encoding.UTF8.GetString(input.AsSpan(WireFormat.NoticeHeaderSize, Math.Min(length, input.Length - WireFormat.NoticeHeaderSize)));
            _ = rank;
        });
    }

    [Fact]
    public void Mutated_transport_negotiation_messages_are_read_or_refused()
    {
        var offer = new byte[LinkNegotiation.OfferSize];
        LinkNegotiation.WriteOffer(offer, mayShare: true, HostIdentity.Of("boot", "net:[1]"));
        Mutations.Fuzz<Refused>(offer, "PDTO\x00\x01\xFF", seed: 1405, input =>
        {
            if (LinkNegotiation.ReadOffer(input) is not { } o) throw new Refused("not an offer");
            Assert.Equal(HostIdentity.Size, o.HostId.Length);
        });

        var answer = new byte[LinkNegotiation.AnswerSize];
        LinkNegotiation.WriteAnswer(answer, LinkChoice.SharedMemory, processId: 4242, capacity: 4 << 20, nonce: new byte[16], token: new byte[16]);
        Mutations.Fuzz<Refused>(answer, "PDTA\x00\x01\x02\x05\xFF\x40", seed: 1406, input =>
        {
            if (LinkNegotiation.ReadAnswer(input) is not { } a) throw new Refused("not an answer");
            if (a.Choice == LinkChoice.SharedMemory)
            {
                Assert.True(a.ProcessId > 0);
                Assert.True(SharedRing.IsValidCapacity(a.Capacity));   // what the connector would map is bounded
            }
            // The file the connector would open stays in the folder it chose: the peer sends numbers, not a path.
            Assert.Equal("/dev/shm", Path.GetDirectoryName(LinkNegotiation.RingPath("/dev/shm", a.ProcessId, new LinkNegotiation.Ends(3, 0, 1), a.Nonce)));
        });

        var confirm = new byte[LinkNegotiation.ConfirmSize];
        LinkNegotiation.WriteConfirm(confirm, mapped: true);
        Mutations.Fuzz<Refused>(confirm, "PDTC\x00\x01", seed: 1407, input =>
        {
            if (LinkNegotiation.ReadConfirm(input) is null) throw new Refused("not a confirmation");
        });
    }

    [Fact]
    public async Task A_listener_answers_or_closes_every_mutated_handshake_and_still_forms_the_ring()
    {
        // A short wait for a generation not opened yet, so mutated generation numbers cost 50 ms, not 2 s.
        await using var harness = new RingHarness(2, pendingWait: TimeSpan.FromMilliseconds(50));
        // Rank 1 of generation 1 waits for rank 0: mutated hellos hit an open slot, a wrong rank, a stale or a future generation.
        var waiting = new RingCommunicator(harness.Listeners[1], 1, 1, harness.Peers, RingHarness.Key, new CollectiveOptions { Timeout = TimeSpan.FromMinutes(2) });
        harness.Communicators.Add(waiting);
        var accepting = waiting.ConnectAsync();
        var port = harness.Listeners[1].Port;
        var significant = Encoding.Latin1.GetBytes(Significant);
        long before = GC.GetTotalAllocatedBytes();
        const int Clients = 16;
        int connections = Mutations.Count / 5;

        // Every connection is ended by the listener itself (SendAndDrainAsync fails when the client has to give up
        // instead), and takes no slot: the real rank 0 still connects. Memory stays flat (a few KB per connection at most).
        await Task.WhenAll(Enumerable.Range(0, Clients).Select(c => Task.Run(async () =>
        {
            var random = new Random(1404 + c);
            for (var i = c; i < connections; i += Clients)
            {
                var input = Mutations.Mutate(Hello(), random, significant);
                await SendAndDrainAsync(port, input, random.Next(3) == 0 ? random.Next(RingAuthentication.ProofSize + 8) : RingAuthentication.ProofSize);
            }
        })));

        Assert.False(accepting.IsCompleted, "a mutated handshake took rank 1's slot");
        var real = new RingCommunicator(harness.Listeners[0], 1, 0, harness.Peers, RingHarness.Key, new CollectiveOptions { Timeout = TimeSpan.FromSeconds(20) });
        harness.Communicators.Add(real);
        await Task.WhenAll(real.ConnectAsync(), accepting);
        var data = new float[] { 1, 2, 3 };
        await Task.WhenAll(real.AllReduceSumAsync(data), waiting.AllReduceSumAsync(new float[] { 1, 1, 1 }));
        Assert.Equal([2f, 3f, 4f], data);
        Assert.True(harness.Listeners[1].Rejected > connections / 10, $"only {harness.Listeners[1].Rejected} rejections were counted");
        long perConnection = (GC.GetTotalAllocatedBytes() - before) / connections;
        Assert.True(perConnection < 256 << 10, $"{perConnection} bytes allocated per connection");
    }

    /// <summary>
    /// Sends <paramref name="hello"/>, then <paramref name="proofBytes"/> random bytes once challenged, and reads until the
    /// listener closes. The listener bounds each read of a handshake by its PendingWait (50 ms here); a client that waits
    /// <see cref="ClientPatience"/> for it to close the connection fails the test.
    /// </summary>
    static async Task SendAndDrainAsync(int port, byte[] hello, int proofBytes)
    {
        using var client = new TcpClient();
        using var bound = new CancellationTokenSource(ClientPatience);
        try
        {
            await client.ConnectAsync(IPAddress.Loopback, port, bound.Token);
            var stream = client.GetStream();
            await stream.WriteAsync(hello, bound.Token);
            var reply = new byte[256];
            int read = await stream.ReadAtLeastAsync(reply, 4, throwOnEndOfStream: false, bound.Token);
            if (read >= 4 && BitConverter.ToInt32(reply) == (int)HandshakeStatus.Accepted)
                await stream.WriteAsync(System.Security.Cryptography.RandomNumberGenerator.GetBytes(proofBytes), bound.Token);
            while (await stream.ReadAsync(reply, bound.Token) > 0) { }
        }
        catch (Exception e) when (e is SocketException or IOException or OperationCanceledException) { }
        if (bound.IsCancellationRequested)
            throw new Xunit.Sdk.XunitException($"the listener held a mutated handshake open for {ClientPatience.TotalSeconds:0} s: " +
                $"it must close one whose read waits out its PendingWait\n{Convert.ToHexString(hello)}");
    }

    static readonly TimeSpan ClientPatience = TimeSpan.FromSeconds(30);
}
