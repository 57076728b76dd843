using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using Pretrain.Tests.Collectives;
using Pretrain.Worker.Collectives;
using Xunit;

namespace Pretrain.Tests.Security;

/// <summary>
/// The attack issue 14 found, made deterministic: a stranger sends a well-formed handshake for an open rank before the
/// real peer does (before, that took the slot and the job failed). Now it is challenged, cannot prove the generation's
/// key, is refused as unauthenticated, and the real peer still connects.
/// </summary>
public sealed class RingAuthenticationTests
{
    [Fact]
    public async Task A_handshake_without_the_generation_key_is_refused_and_the_real_peer_takes_the_slot()
    {
        await using var harness = new RingHarness(2);
        var waiting = new RingCommunicator(harness.Listeners[1], 1, 1, harness.Peers, RingHarness.Key, new CollectiveOptions { Timeout = TimeSpan.FromSeconds(20) });
        harness.Communicators.Add(waiting);
        var accepting = waiting.ConnectAsync();

        using (var stranger = new TcpClient())
        {
            await stranger.ConnectAsync(IPAddress.Loopback, harness.Listeners[1].Port);
            var stream = stranger.GetStream();
            var hello = new byte[RingAuthentication.HelloSize];
            new Handshake(1, 0, 1, 2).Write(hello);
            await stream.WriteAsync(hello);
            var challenge = new byte[RingAuthentication.ChallengeSize];
            await stream.ReadExactlyAsync(challenge);
            Assert.Equal(HandshakeStatus.Accepted, (HandshakeStatus)BitConverter.ToInt32(challenge));    // taken as far as the challenge
            await stream.WriteAsync(RandomNumberGenerator.GetBytes(RingAuthentication.ProofSize));     // it cannot know the proof
            var verdict = new byte[RingAuthentication.VerdictSize];
            await stream.ReadExactlyAsync(verdict);
            Assert.Equal(HandshakeStatus.Unauthenticated, (HandshakeStatus)BitConverter.ToInt32(verdict));
        }
        Assert.Equal(1, harness.Listeners[1].Rejected);
        Assert.False(accepting.IsCompleted, "the stranger took rank 1's slot");

        var real = new RingCommunicator(harness.Listeners[0], 1, 0, harness.Peers, RingHarness.Key, new CollectiveOptions { Timeout = TimeSpan.FromSeconds(20) });
        harness.Communicators.Add(real);
        await Task.WhenAll(real.ConnectAsync(), accepting);
        var data = new float[] { 1, 2 };
        await Task.WhenAll(real.AllReduceSumAsync(data), waiting.AllReduceSumAsync(new float[] { 10, 20 }));
        Assert.Equal([11f, 22f], data);
    }

    [Fact]
    public async Task A_listener_that_cannot_prove_the_key_is_not_sent_anything_more()
    {
        await using var harness = new RingHarness(2);
        // Rank 1's listener waits with another key: rank 0 checks the listener's proof first and gives up, naming it.
        var impostor = new RingCommunicator(harness.Listeners[1], 1, 1, harness.Peers, SHA256.HashData("another job"u8), new CollectiveOptions { Timeout = TimeSpan.FromSeconds(5) });
        harness.Communicators.Add(impostor);
        var real = new RingCommunicator(harness.Listeners[0], 1, 0, harness.Peers, RingHarness.Key, new CollectiveOptions { Timeout = TimeSpan.FromSeconds(5) });
        harness.Communicators.Add(real);

        var error = await Assert.ThrowsAsync<CollectiveException>(() => real.ConnectAsync());

        Assert.Contains("could not prove generation 1's key", error.Message);
        Assert.Equal(1, error.PeerRank);
    }
}
