using System.Net;
using System.Security.Cryptography.X509Certificates;
using Pretrain.Shared.Security;
using Pretrain.Tests.Collectives;
using Pretrain.Worker.Collectives;
using Xunit;

namespace Pretrain.Tests.Security;

/// <summary>The ring over mutual TLS (a job's tls_data_plane): it forms and reduces as the plain one does; a plain or
/// foreign-certificate peer takes no slot.</summary>
public sealed class TlsRingTests : IDisposable
{
    static readonly TimeSpan Month = TimeSpan.FromDays(30);
    static readonly string[] Loopback = ["localhost", "127.0.0.1"];
    readonly X509Certificate2 _authority = JobCertificates.CreateAuthority("ring", Month);
    readonly List<IDisposable> _owned = [];

    DataPlaneTlsOptions Node(string name, X509Certificate2? issuer = null)
    {
        var certificate = JobCertificates.CreateNode(issuer ?? _authority, name, Loopback, Month);
        _owned.Add(certificate);
        return new DataPlaneTlsOptions(certificate, _authority);
    }

    public void Dispose()
    {
        foreach (var d in _owned) d.Dispose();
        _authority.Dispose();
    }

    [Fact]
    public async Task Three_ranks_over_TLS_connect_and_allreduce_exactly()
    {
        var tls = Enumerable.Range(0, 3).Select(r => Node($"worker-{r}")).ToArray();
        await using var harness = new RingHarness(3, r => tls[r]);
        var ring = await harness.ConnectAsync(1, r => new CollectiveOptions { Tls = tls[r], Timeout = TimeSpan.FromSeconds(20) });
        // One process, so one host: shared memory would be chosen, but the user asked for encryption.
        Assert.All(ring, c => Assert.Equal(LinkTransport.Tls, c.SendTransport));
        Assert.All(ring, c => Assert.Equal(LinkTransport.Tls, c.ReceiveTransport));

        var data = Enumerable.Range(0, 3).Select(r => Enumerable.Range(0, 300_000).Select(i => RingHarness.Value(r, i)).ToArray()).ToArray();
        await Task.WhenAll(ring.Select((c, r) => c.AllReduceSumAsync(data[r])));

        for (var i = 0; i < 300_000; i += 997)
            Assert.All(data, d => Assert.Equal(RingHarness.Value(0, i) + RingHarness.Value(1, i) + RingHarness.Value(2, i), d[i]));
    }

    [Fact]
    public async Task A_plain_connection_to_an_encrypted_generation_takes_no_slot()
    {
        var tls = Node("worker-1");
        await using var harness = new RingHarness(2, r => r == 1 ? tls : null);
        var encrypted = new RingCommunicator(harness.Listeners[1], 1, 1, harness.Peers, RingHarness.Key, new CollectiveOptions { Tls = tls, Timeout = TimeSpan.FromSeconds(3) });
        harness.Communicators.Add(encrypted);
        var plain = new RingCommunicator(harness.Listeners[0], 1, 0, harness.Peers, RingHarness.Key, new CollectiveOptions { Timeout = TimeSpan.FromSeconds(3) });
        harness.Communicators.Add(plain);

        var error = await Assert.ThrowsAsync<CollectiveException>(() => plain.ConnectAsync());

        Assert.Contains("TlsRequired", error.Message);
        Assert.True(harness.Listeners[1].Rejected >= 1);
    }

    [Fact]
    public async Task A_peer_whose_certificate_another_CA_issued_is_refused()
    {
        using var other = JobCertificates.CreateAuthority("intruder", Month);
        var good = Node("worker-1");
        var foreign = new DataPlaneTlsOptions(JobCertificates.CreateNode(other, "worker-0", Loopback, Month), _authority);
        _owned.Add(foreign.Certificate);
        await using var harness = new RingHarness(2, r => r == 1 ? good : foreign);
        var listening = new RingCommunicator(harness.Listeners[1], 1, 1, harness.Peers, RingHarness.Key, new CollectiveOptions { Tls = good, Timeout = TimeSpan.FromSeconds(3) });
        harness.Communicators.Add(listening);
        var intruder = new RingCommunicator(harness.Listeners[0], 1, 0, harness.Peers, RingHarness.Key, new CollectiveOptions { Tls = foreign, Timeout = TimeSpan.FromSeconds(3) });
        harness.Communicators.Add(intruder);

        await Assert.ThrowsAsync<CollectiveException>(() => intruder.ConnectAsync());

        Assert.True(harness.Listeners[1].Rejected >= 1);
        // The listener's slot is still free: its own connect waits on (its next rank, the intruder's listener) and then
        // times out naming a peer, never succeeding with the intruder's socket.
        await Assert.ThrowsAsync<CollectiveException>(() => listening.ConnectAsync());
    }
}
