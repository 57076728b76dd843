using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using Akka.Actor;
using Akka.Actor.Setup;
using Akka.Configuration;
using Akka.Event;
using Akka.Remote.Transport.DotNetty;
using Pretrain.Shared.Security;
using Pretrain.Shared.Telemetry;

namespace Pretrain.Shared.Cluster;

/// <summary>
/// Akka.Remote over TLS with mutual authentication (issue 14): every node presents its node certificate, and a peer
/// is accepted only when the job CA issued its certificate — checked by our own validator against the job CA alone,
/// not the machine's trust store (Akka's default chain validation would trust any public CA and not ours). Host names
/// are not checked: the job CA says who belongs to the job. A peer without such a certificate cannot associate, so it
/// can neither join the cluster nor send any actor a message.
/// </summary>
/// <param name="Certificate">This node's certificate with its private key (`pretrain certs`: NAME.pfx).</param>
/// <param name="Authority">The job CA (ca.crt).</param>
public sealed record ClusterTls(X509Certificate2 Certificate, X509Certificate2 Authority)
{
    /// <summary>Loads the files `pretrain certs` wrote; errors name the file.</summary>
    public static ClusterTls Load(string certificatePath, string authorityPath) =>
        new(JobCertificates.LoadNode(certificatePath), JobCertificates.LoadAuthority(authorityPath));

    /// <summary>The address scheme of a TLS transport (Akka names it so; a plain node cannot reach it).</summary>
    public const string Scheme = "akka.ssl.tcp";

    /// <summary>HOCON that turns TLS on; the certificate and validator come in through <see cref="Setup"/>.</summary>
    public const string Hocon = """
        akka.remote.dot-netty.tcp {
          enable-ssl = true
          ssl {
            suppress-validation = false
            require-mutual-authentication = true
            validate-certificate-hostname = false
          }
        }
        """;

    private DotNettySslSetup Setup() =>
        new(Certificate, suppressValidation: false, requireMutualAuthentication: true, validateCertificateHostname: false, customValidator: Validate);

    private bool Validate(X509Certificate2? certificate, X509Chain? chain, string remotePeer, SslPolicyErrors errors, ILoggingAdapter log)
    {
        string why = "it presented no certificate";
        if (certificate is not null && JobCertificates.IsIssuedBy(certificate, Authority, PeerRole.Node, out why)) return true;
        log.Warning("refused TLS association with {0}: {1}", remotePeer, why);
        PretrainMetrics.Rejected("control", "bad_certificate");
        return false;
    }

    /// <summary>An ActorSystem named <see cref="ClusterHocon.SystemName"/> from <paramref name="config"/>, over TLS when <paramref name="tls"/> is given.</summary>
    public static ActorSystem CreateSystem(Config config, ClusterTls? tls)
    {
        if (tls is null) return ActorSystem.Create(ClusterHocon.SystemName, config);
        var setup = BootstrapSetup.Create().WithConfig(ConfigurationFactory.ParseString(Hocon).WithFallback(config));
        return ActorSystem.Create(ClusterHocon.SystemName, ActorSystemSetup.Create(setup, tls.Setup()));
    }
}
