using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Pretrain.Shared.Security;

namespace Pretrain.Worker.Collectives;

/// <summary>
/// The certificates of an opt-in TLS data plane: this node's own (with its private key, e.g. from
/// <see cref="JobCertificates.LoadNode"/>) and the job CA that must have issued every peer's.
/// </summary>
public sealed record DataPlaneTlsOptions(X509Certificate2 Certificate, X509Certificate2 Authority);

/// <summary>
/// Mutual TLS over a connected ring socket: the side that dialled is the TLS client, the side that accepted the
/// server, and each presents its node certificate and accepts the other's only when the job CA issued it
/// (<see cref="JobCertificates.IsIssuedBy(X509Certificate2, X509Certificate2, PeerRole, out string)"/>). Host names
/// are not checked: ring peers are addressed by IP, and the job CA alone says who belongs to the job. TLS 1.3 is
/// negotiated where both ends have it (one round trip fewer per connection); 1.2 remains for older OpenSSL builds.
/// The returned <see cref="SslStream"/> owns the socket; on failure the socket is closed and the exception names the
/// peer and why. Each handshake is bounded by the caller's token: a peer that connects and then says nothing must not
/// hold a ring slot.
/// The side that refuses throws here; the refused side's handshake may still complete, because .NET on Linux checks the
/// peer's certificate after OpenSSL has finished the handshake, and learns of the refusal as an alert or a closed
/// connection on its first read. A caller should therefore exchange something (the ring's handshake) before it trusts
/// the link.
/// </summary>
public static class DataPlaneTls
{
    const SslProtocols Protocols = SslProtocols.Tls13 | SslProtocols.Tls12;

    /// <summary>TLS as the side that opened the connection; the peer must present a certificate that allows serverAuth.</summary>
    public static Task<SslStream> AuthenticateAsClientAsync(Socket socket, DataPlaneTlsOptions options, CancellationToken ct)
    {
        var refusal = new Refusal();
        var settings = new SslClientAuthenticationOptions
        {
            // An IP address as the target host sends no SNI; the name would not be checked anyway.
            TargetHost = (socket.RemoteEndPoint as IPEndPoint)?.Address.ToString() ?? "",
            // A context, not a collection: .NET then presents it whatever issuers the server names in its request.
            ClientCertificateContext = SslStreamCertificateContext.Create(options.Certificate, additionalCertificates: null, offline: true),
            EnabledSslProtocols = Protocols,
            CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
            RemoteCertificateValidationCallback = (_, certificate, _, errors) => Accept(certificate, errors, options.Authority, PeerRole.Server, refusal),
        };
        return AuthenticateAsync(socket, "client", refusal, (stream, token) => stream.AuthenticateAsClientAsync(settings, token), ct);
    }

    /// <summary>TLS as the side that accepted the connection; the peer must present a certificate that allows clientAuth.</summary>
    public static Task<SslStream> AuthenticateAsServerAsync(Socket socket, DataPlaneTlsOptions options, CancellationToken ct)
    {
        var refusal = new Refusal();
        var settings = new SslServerAuthenticationOptions
        {
            ServerCertificateContext = SslStreamCertificateContext.Create(options.Certificate, additionalCertificates: null, offline: true),
            ClientCertificateRequired = true,
            EnabledSslProtocols = Protocols,
            CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
            RemoteCertificateValidationCallback = (_, certificate, _, errors) => Accept(certificate, errors, options.Authority, PeerRole.Client, refusal),
        };
        return AuthenticateAsync(socket, "server", refusal, (stream, token) => stream.AuthenticateAsServerAsync(settings, token), ct);
    }

    /// <summary>Why our validation callback refused the peer's certificate, for the exception (SslStream's own message only says it was refused).</summary>
    sealed class Refusal
    {
        public string? Reason;
    }

    static async Task<SslStream> AuthenticateAsync(Socket socket, string side, Refusal refusal,
        Func<SslStream, CancellationToken, Task> handshake, CancellationToken ct)
    {
        string peer = socket.RemoteEndPoint?.ToString() ?? "(unknown endpoint)";
        var stream = new SslStream(new NetworkStream(socket, ownsSocket: true), leaveInnerStreamOpen: false);
        try
        {
            await handshake(stream, ct);
            return stream;
        }
        catch (Exception e)
        {
            await stream.DisposeAsync();                                       // closes the socket too
            if (e is OperationCanceledException && ct.IsCancellationRequested)
                throw new OperationCanceledException($"data-plane TLS handshake (as {side}) with peer {peer} did not finish in time", e, ct);
            if (e is not (AuthenticationException or IOException or SocketException or OperationCanceledException or ObjectDisposedException)) throw;
            throw new AuthenticationException(refusal.Reason is { } reason
                ? $"data-plane TLS (as {side}) refused peer {peer}: {reason}"
                : $"data-plane TLS handshake (as {side}) with peer {peer} failed: {e.Message}", e);
        }
    }

    static bool Accept(X509Certificate? certificate, SslPolicyErrors errors, X509Certificate2 authority, PeerRole role, Refusal refusal)
    {
        if (certificate == null || errors.HasFlag(SslPolicyErrors.RemoteCertificateNotAvailable))
        {
            refusal.Reason = "it presented no certificate (every node of a TLS job presents the one `pretrain certs` made for it)";
            return false;
        }
        // SslPolicyErrors' chain and name errors are the system trust store's verdict, which knows nothing of the
        // job CA, and the name a ring peer was dialled by is an IP: the job CA's check alone decides.
        var peer = certificate as X509Certificate2 ?? X509CertificateLoader.LoadCertificate(certificate.GetRawCertData());
        try
        {
            if (JobCertificates.IsIssuedBy(peer, authority, role, out var why)) return true;
            refusal.Reason = "its " + why;      // "its certificate 'CN=…' is not issued by the job CA …"
            return false;
        }
        finally
        {
            if (!ReferenceEquals(peer, certificate)) peer.Dispose();
        }
    }
}
