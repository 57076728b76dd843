using System.Security.Cryptography.X509Certificates;

namespace Pretrain.Shared.Security;

/// <summary>
/// What a peer's certificate is used for in a handshake, so which extended key usage it must allow: the side that
/// accepted the connection is a TLS server, the side that opened it a TLS client. A node certificate allows both.
/// </summary>
[Flags]
public enum PeerRole
{
    Server = 1,
    Client = 2,
    Node = Server | Client,
}

// The one check both planes' TLS validation callbacks make: a peer is accepted when the job's CA issued its
// certificate, it is valid now, and it may be used for the peer's side of the handshake. Host names are not
// checked (ring peers are dialled by IP, pods change theirs); the system's trusted roots play no part.
public static partial class JobCertificates
{
    /// <summary>
    /// True when <paramref name="authority"/> issued <paramref name="leaf"/>, the leaf is valid now and allows both
    /// serverAuth and clientAuth (<see cref="PeerRole.Node"/>); otherwise <paramref name="why"/> says what failed.
    /// </summary>
    public static bool IsIssuedBy(X509Certificate2 leaf, X509Certificate2 authority, out string why) =>
        IsIssuedBy(leaf, authority, PeerRole.Node, out why);

    /// <summary>
    /// True when <paramref name="authority"/> issued <paramref name="leaf"/>, the leaf is valid now and allows the
    /// extended key usages of <paramref name="role"/>; otherwise false, and <paramref name="why"/> says what failed
    /// (expired, issued by another CA, missing clientAuth, …) naming the certificate. Empty when true.
    /// </summary>
    public static bool IsIssuedBy(X509Certificate2 leaf, X509Certificate2 authority, PeerRole role, out string why)
    {
        why = Problem(leaf, authority, role) is { } problem ? $"certificate '{leaf.Subject}' {problem}" : "";
        return why.Length == 0;
    }

    static string? Problem(X509Certificate2 leaf, X509Certificate2 authority, PeerRole role)
    {
        if (SameCertificate(leaf, authority)) return "is the job CA's own, not a node certificate";
        // NotBefore and NotAfter are local times; so is DateTime.Now.
        var now = DateTime.Now;
        if (now > leaf.NotAfter) return $"expired at {leaf.NotAfter.ToUniversalTime():u}";
        if (now < leaf.NotBefore) return $"is not valid before {leaf.NotBefore.ToUniversalTime():u} (is this machine's clock behind?)";
        if (now > authority.NotAfter) return $"was issued by a job CA that expired at {authority.NotAfter.ToUniversalTime():u}";

        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;    // the job CA alone, not the system's roots
        chain.ChainPolicy.CustomTrustStore.Add(authority);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;        // a job CA publishes no revocation list
        chain.ChainPolicy.DisableCertificateDownloads = true;                  // never fetch an issuer a certificate points at
        bool built = chain.Build(leaf);
        bool direct = chain.ChainElements.Count == 2 && SameCertificate(chain.ChainElements[1].Certificate, authority);
        if (!built || !direct)
        {
            var flags = chain.ChainStatus.Aggregate(X509ChainStatusFlags.NoError, (all, s) => all | s.Status);
            const X509ChainStatusFlags OtherIssuer = X509ChainStatusFlags.PartialChain | X509ChainStatusFlags.UntrustedRoot | X509ChainStatusFlags.NotSignatureValid;
            if ((flags & OtherIssuer) != 0 || !direct)
                return leaf.IssuerName.RawData.AsSpan().SequenceEqual(authority.SubjectName.RawData)
                    ? $"is not issued by the job CA: its issuer bears the job CA's name '{authority.Subject}' but not its key " +
                      "(a certificate from another `pretrain certs` run for the same job?)"
                    : $"is not issued by the job CA '{authority.Subject}' but by '{leaf.Issuer}'";
            return $"does not verify against the job CA '{authority.Subject}': {string.Join(", ", chain.ChainStatus.Select(s => s.Status).Distinct())}";
        }

        if (leaf.Extensions[EnhancedKeyUsageOid] is not X509EnhancedKeyUsageExtension usages)
            return "names no extended key usage (a node certificate allows serverAuth and clientAuth)";
        if (role.HasFlag(PeerRole.Server) && !Allows(usages, ServerAuthOid))
            return "does not allow serverAuth (extended key usage), which the accepting side of a TLS connection needs";
        if (role.HasFlag(PeerRole.Client) && !Allows(usages, ClientAuthOid))
            return "does not allow clientAuth (extended key usage), which the connecting side of a mutual-TLS connection needs";
        return null;
    }

    static bool Allows(X509EnhancedKeyUsageExtension usages, string oid)
    {
        foreach (var usage in usages.EnhancedKeyUsages)
            if (usage.Value == oid) return true;
        return false;
    }

    static bool SameCertificate(X509Certificate2 a, X509Certificate2 b) => a.RawDataMemory.Span.SequenceEqual(b.RawDataMemory.Span);
}
