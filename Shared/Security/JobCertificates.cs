using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Pretrain.Shared.Security;

/// <summary>
/// A job's own certificate authority and the certificates of its nodes, made with .NET's X509 API alone: neither
/// openssl nor cert-manager is needed to run a TLS job. Both planes use them for mutual TLS: every node is a
/// TLS server (it accepts connections) and a TLS client (it opens them), so a node certificate allows serverAuth
/// and clientAuth, and a peer is accepted when the job's CA issued its certificate (<see cref="IsIssuedBy(X509Certificate2, X509Certificate2, PeerRole, out string)"/>).
/// Host names are not what proves membership: ring peers are dialled by IP and Kubernetes gives pods new ones.
/// Keys are ECDSA P-256: small certificates and fast handshakes, and accepted by every TLS 1.2/1.3 stack.
/// This file makes certificates; JobCertificates.Files.cs writes and loads them; JobCertificates.Validation.cs checks them.
/// </summary>
public static partial class JobCertificates
{
    const string ServerAuthOid = "1.3.6.1.5.5.7.3.1";
    const string ClientAuthOid = "1.3.6.1.5.5.7.3.2";
    const string EnhancedKeyUsageOid = "2.5.29.37";
    const string BasicConstraintsOid = "2.5.29.19";
    const string SubjectKeyIdentifierOid = "2.5.29.14";

    /// <summary>
    /// A certificate starts this much before it is made: a node whose clock is a little behind the machine that
    /// ran `pretrain certs` would otherwise refuse it as "not yet valid" for the first seconds or minutes.
    /// </summary>
    static readonly TimeSpan ClockSkew = TimeSpan.FromMinutes(5);

    /// <summary>The longest name (job or node) accepted: a DNS label's 63 characters.</summary>
    const int MaxNameLength = 63;

    /// <summary>
    /// A new job CA, valid from now (less <see cref="ClockSkew"/>) for <paramref name="validity"/>, with its private
    /// key. It may sign node certificates only (path length 0): a stolen node key cannot mint further certificates.
    /// </summary>
    public static X509Certificate2 CreateAuthority(string jobName, TimeSpan validity)
    {
        var now = DateTimeOffset.UtcNow;
        return CreateAuthority(jobName, now - ClockSkew, now + validity);
    }

    /// <summary>A new job CA valid from <paramref name="notBefore"/> to <paramref name="notAfter"/> (tests make old ones).</summary>
    public static X509Certificate2 CreateAuthority(string jobName, DateTimeOffset notBefore, DateTimeOffset notAfter)
    {
        CheckName(jobName, "job name");
        CheckWindow(notBefore, notAfter);
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(Subject($"{jobName} job CA"), key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(
            certificateAuthority: true, hasPathLengthConstraint: true, pathLengthConstraint: 0, critical: true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, critical: true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, critical: false));
        // A self-signed certificate gets a random serial number from CreateSelfSigned.
        return request.CreateSelfSigned(notBefore, notAfter);
    }

    /// <summary>
    /// A node certificate signed by <paramref name="authority"/> (which must hold its private key), valid from now for
    /// <paramref name="validity"/> but never beyond the CA, with its own private key. <paramref name="dnsNamesOrIps"/>
    /// become its subject alternative names: an IP address where one parses, a DNS name otherwise.
    /// </summary>
    public static X509Certificate2 CreateNode(X509Certificate2 authority, string nodeName, IEnumerable<string> dnsNamesOrIps, TimeSpan validity)
    {
        var now = DateTimeOffset.UtcNow;
        return CreateNode(authority, nodeName, dnsNamesOrIps, now - ClockSkew, now + validity);
    }

    /// <summary>
    /// A node certificate valid from <paramref name="notBefore"/> to <paramref name="notAfter"/>, both clamped to the
    /// CA's own validity (a certificate cannot outlive its issuer; .NET refuses to sign one that would); a window
    /// wholly outside the CA's is refused.
    /// </summary>
    public static X509Certificate2 CreateNode(X509Certificate2 authority, string nodeName, IEnumerable<string> dnsNamesOrIps,
        DateTimeOffset notBefore, DateTimeOffset notAfter)
    {
        CheckNodeName(nodeName);
        if (!authority.HasPrivateKey)
            throw new CertificateException($"the job CA '{authority.Subject}' was loaded without its private key ({AuthorityKeyFile}); it cannot sign node '{nodeName}'");
        var hosts = dnsNamesOrIps.ToList();
        if (hosts.Count == 0) throw new CertificateException($"node '{nodeName}' needs at least one DNS name or IP address");
        CheckWindow(notBefore, notAfter);
        var (first, last) = (new DateTimeOffset(authority.NotBefore), new DateTimeOffset(authority.NotAfter));
        if (notAfter <= first || notBefore >= last)
            throw new CertificateException($"node '{nodeName}': a certificate valid from {notBefore.UtcDateTime:u} to {notAfter.UtcDateTime:u} " +
                                           $"would lie outside the job CA's validity ({first.UtcDateTime:u} to {last.UtcDateTime:u})");
        if (notBefore < first) notBefore = first;
        if (notAfter > last) notAfter = last;

        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(Subject(nodeName), key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(
            certificateAuthority: false, hasPathLengthConstraint: false, pathLengthConstraint: 0, critical: true));
        // DigitalSignature is all an ECDSA key does in TLS (an RSA key would add KeyEncipherment for TLS 1.2's RSA key exchange).
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, critical: true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(
            new OidCollection { new Oid(ServerAuthOid), new Oid(ClientAuthOid) }, critical: false));
        request.CertificateExtensions.Add(AlternativeNames(nodeName, hosts));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, critical: false));
        // The authority key identifier lets a verifier pick the right CA among several with one name; a CA made
        // elsewhere without a subject key identifier has none to point at.
        if (authority.Extensions[SubjectKeyIdentifierOid] != null)
            request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(
                authority, includeKeyIdentifier: true, includeIssuerAndSerial: false));

        using var signed = request.Create(authority, notBefore, notAfter, SerialNumber());
        return signed.CopyWithPrivateKey(key);
    }

    static X509Extension AlternativeNames(string nodeName, IEnumerable<string> hosts)
    {
        var names = new SubjectAlternativeNameBuilder();
        foreach (var host in hosts)
        {
            if (IPAddress.TryParse(host, out var address)) names.AddIpAddress(address);
            else if (IsDnsName(host)) names.AddDnsName(host);
            else throw new CertificateException($"node '{nodeName}': '{host}' is neither an IP address nor a DNS name (letters, digits, '-' and '.'; '*.' may lead)");
        }
        return names.Build();
    }

    /// <summary>
    /// 16 random bytes (128 bits; RFC 5280 allows up to 20 octets), positive and without a leading zero byte, so no
    /// two certificates of one CA share a serial number and none is guessable (CA/Browser Forum asks for 64 bits).
    /// </summary>
    static byte[] SerialNumber()
    {
        var serial = RandomNumberGenerator.GetBytes(16);
        serial[0] = (byte)((serial[0] & 0x7F) | 0x40);
        return serial;
    }

    static X500DistinguishedName Subject(string commonName)
    {
        // Build() encodes the last added first: O then CN on the wire, shown as "CN=…, O=pretrain" by .NET.
        var name = new X500DistinguishedNameBuilder();
        name.AddCommonName(commonName);
        name.AddOrganizationName("pretrain");
        return name.Build();
    }

    /// <summary>A node name becomes file names (NAME.pfx) and a DNS name: letters, digits, '-' and '.', and not "ca".</summary>
    static void CheckNodeName(string name)
    {
        CheckName(name, "node name");
        if (name.Equals("ca", StringComparison.OrdinalIgnoreCase))
            throw new CertificateException($"node name '{name}' is taken by the job CA's own files ({AuthorityCertificateFile}, {AuthorityKeyFile})");
    }

    static void CheckName(string name, string what)
    {
        bool valid = name.Length is > 0 and <= MaxNameLength && char.IsAsciiLetterOrDigit(name[0])
                     && name.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '.');
        if (!valid)
            throw new CertificateException($"{what} '{name}' must be 1-{MaxNameLength} letters, digits, '-' or '.', starting with a letter or digit " +
                                           "(it names files and goes into a certificate)");
    }

    static bool IsDnsName(string host)
    {
        var rest = host.StartsWith("*.", StringComparison.Ordinal) ? host[2..] : host;
        return rest.Length is > 0 and <= 253 && rest.Split('.').All(label =>
            label.Length is > 0 and <= MaxNameLength && label[0] != '-' && label[^1] != '-' && label.All(c => char.IsAsciiLetterOrDigit(c) || c == '-'));
    }

    static void CheckWindow(DateTimeOffset notBefore, DateTimeOffset notAfter)
    {
        if (notAfter <= notBefore)
            throw new CertificateException($"a certificate valid from {notBefore.UtcDateTime:u} to {notAfter.UtcDateTime:u} would never be valid");
    }
}
