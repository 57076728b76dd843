using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Pretrain.Shared.Security;
using Pretrain.Worker.Collectives;
using Xunit;

namespace Pretrain.Tests.Security;

/// <summary>
/// The data plane's opt-in mutual TLS over a loopback socket pair: peers with certificates from the job CA talk;
/// a peer whose certificate another CA issued is refused by name, within a bounded time.
/// </summary>
public sealed class DataPlaneTlsTests : IDisposable
{
    static readonly TimeSpan Month = TimeSpan.FromDays(30);
    static readonly TimeSpan Bound = TimeSpan.FromSeconds(10);
    static readonly string[] Loopback = ["localhost", "127.0.0.1"];
    readonly X509Certificate2 _authority = JobCertificates.CreateAuthority("demo", Month);
    readonly List<IDisposable> _owned = [];

    DataPlaneTlsOptions Node(X509Certificate2 authority, string name)
    {
        var certificate = JobCertificates.CreateNode(authority, name, Loopback, Month);
        _owned.Add(certificate);
        return new DataPlaneTlsOptions(certificate, _authority);
    }

    [Fact]
    public async Task Two_nodes_of_the_job_CA_complete_mutual_TLS_and_exchange_bytes()
    {
        var (dialled, accepted) = await ConnectedPairAsync();
        using var bound = new CancellationTokenSource(Bound);
        var serving = DataPlaneTls.AuthenticateAsServerAsync(accepted, Node(_authority, "worker-1"), bound.Token);
        var connecting = DataPlaneTls.AuthenticateAsClientAsync(dialled, Node(_authority, "worker-0"), bound.Token);
        await using var server = await serving;
        await using var client = await connecting;

        Assert.True(server.IsMutuallyAuthenticated, "the server saw the client's certificate");
        Assert.True(client.IsMutuallyAuthenticated, "the client presented its certificate");
        Assert.Contains("worker-0", server.RemoteCertificate!.Subject);
        Assert.Contains("worker-1", client.RemoteCertificate!.Subject);
        await client.WriteAsync(new byte[] { 1, 2, 3 }, bound.Token);
        var received = new byte[3];
        await server.ReadExactlyAsync(received, bound.Token);
        Assert.Equal(new byte[] { 1, 2, 3 }, received);
        await server.WriteAsync(new byte[] { 4 }, bound.Token);
        await client.ReadExactlyAsync(received.AsMemory(0, 1), bound.Token);
        Assert.Equal(4, received[0]);
    }

    [Fact]
    public async Task A_client_with_a_certificate_of_another_CA_is_refused_by_the_server_in_bounded_time()
    {
        using var other = JobCertificates.CreateAuthority("intruder", Month);
        var (dialled, accepted) = await ConnectedPairAsync();
        string client = dialled.LocalEndPoint!.ToString()!;                  // read now: a refused handshake closes the socket
        using var bound = new CancellationTokenSource(Bound);
        var serving = DataPlaneTls.AuthenticateAsServerAsync(accepted, Node(_authority, "worker-1"), bound.Token);
        var connecting = DataPlaneTls.AuthenticateAsClientAsync(dialled, Node(other, "worker-0"), bound.Token);

        var refused = await Assert.ThrowsAsync<AuthenticationException>(() => serving.WaitAsync(Bound));
        Assert.Contains($"refused peer {client}", refused.Message);
        Assert.Contains("is not issued by the job CA", refused.Message);
        // The refused side's handshake may complete (.NET on Linux checks the peer's certificate once OpenSSL has
        // finished the handshake): the refusal then reaches it as an alert or a closed connection on its first read.
        var clientSide = await Record.ExceptionAsync(() => ReadOneByteAsync(connecting, bound.Token).WaitAsync(Bound));
        Assert.True(clientSide is AuthenticationException or IOException, $"the client read past a refused handshake: {clientSide}");
    }

    [Fact]
    public async Task A_server_with_a_certificate_of_another_CA_is_refused_by_the_client()
    {
        using var other = JobCertificates.CreateAuthority("intruder", Month);
        var (dialled, accepted) = await ConnectedPairAsync();
        string server = accepted.LocalEndPoint!.ToString()!;
        using var bound = new CancellationTokenSource(Bound);
        var serving = DataPlaneTls.AuthenticateAsServerAsync(accepted, Node(other, "impostor"), bound.Token);
        var connecting = DataPlaneTls.AuthenticateAsClientAsync(dialled, Node(_authority, "worker-0"), bound.Token);

        var refused = await Assert.ThrowsAsync<AuthenticationException>(() => connecting.WaitAsync(Bound));
        Assert.Contains($"refused peer {server}", refused.Message);
        Assert.Contains("is not issued by the job CA", refused.Message);
        var serverSide = await Record.ExceptionAsync(() => ReadOneByteAsync(serving, bound.Token).WaitAsync(Bound));
        Assert.True(serverSide is AuthenticationException or IOException, $"the server read past a refused handshake: {serverSide}");
    }

    [Fact]
    public async Task A_peer_that_never_speaks_fails_the_handshake_when_the_token_fires_naming_it()
    {
        var (dialled, accepted) = await ConnectedPairAsync();
        using var silent = dialled;                                          // connected, says nothing
        string peer = dialled.LocalEndPoint!.ToString()!;
        using var bound = new CancellationTokenSource(TimeSpan.FromMilliseconds(300));
        var stopped = await Assert.ThrowsAnyAsync<OperationCanceledException>(
            () => DataPlaneTls.AuthenticateAsServerAsync(accepted, Node(_authority, "worker-1"), bound.Token).WaitAsync(Bound));
        Assert.Contains($"peer {peer}", stopped.Message);
    }

    static async Task ReadOneByteAsync(Task<SslStream> handshake, CancellationToken ct)
    {
        await using var stream = await handshake;
        var one = new byte[1];
        if (await stream.ReadAsync(one, ct) == 0) throw new IOException("the peer closed the connection");
    }

    /// <summary>Two ends of one loopback TCP connection: the one that dialled and the one that accepted.</summary>
    static async Task<(Socket Dialled, Socket Accepted)> ConnectedPairAsync()
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        var dialled = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        var accepting = listener.AcceptAsync();
        await dialled.ConnectAsync(listener.LocalEndPoint!);
        return (dialled, await accepting);
    }

    public void Dispose()
    {
        foreach (var owned in _owned) owned.Dispose();
        _authority.Dispose();
    }
}
