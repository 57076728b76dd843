using System.Net;
using System.Runtime.Versioning;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Pretrain.Cli;
using Pretrain.Cli.Commands;
using Pretrain.Shared.Security;
using Xunit;

namespace Pretrain.Tests.Security;

/// <summary>
/// The job CA and node certificates (issue 14): made, written and loaded back; accepted only when the job CA issued
/// them, they are valid now and allow the peer's side of the handshake; `pretrain certs` writes private keys 0600 and
/// will not replace a CA by accident.
/// </summary>
[SupportedOSPlatform("linux")]                                             // file modes
public sealed class CertificateTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("pretrain-certs-").FullName;
    static readonly TimeSpan Month = TimeSpan.FromDays(30);
    static readonly string[] Loopback = ["localhost", "127.0.0.1"];
    const UnixFileMode OwnerOnly = UnixFileMode.UserRead | UnixFileMode.UserWrite;

    [Fact]
    public void A_CA_and_its_node_certificates_survive_a_round_trip_through_their_files()
    {
        var written = JobCertificates.IssueDirectory(_dir, "demo", [new NodeRequest("worker", ["worker-0.workers", "10.1.2.3"])], Month, replaceAuthority: false);

        Assert.Equal(new[] { "ca.crt", "ca.key", "worker.pfx", "worker.crt", "worker.key" }, written.Select(f => Path.GetFileName(f.Path)));
        using var authority = JobCertificates.LoadAuthority(Path.Combine(_dir, "ca.crt"));
        using var node = JobCertificates.LoadNode(Path.Combine(_dir, "worker.pfx"));
        using var pem = X509Certificate2.CreateFromPemFile(Path.Combine(_dir, "worker.crt"), Path.Combine(_dir, "worker.key"));
        Assert.False(authority.HasPrivateKey, "ca.crt holds the certificate alone");
        Assert.True(node.HasPrivateKey);
        Assert.Equal(node.Thumbprint, pem.Thumbprint);
        Assert.True(JobCertificates.IsIssuedBy(node, authority, out var why), why);
        Assert.Empty(why);
        Assert.Contains("demo", authority.Subject);
        var names = new X509SubjectAlternativeNameExtension(node.Extensions["2.5.29.17"]!.RawData, critical: false);
        Assert.Equal(new[] { "worker-0.workers" }, names.EnumerateDnsNames());
        Assert.Equal(new[] { IPAddress.Parse("10.1.2.3") }, names.EnumerateIPAddresses());
        using var withKey = JobCertificates.LoadAuthority(Path.Combine(_dir, "ca.crt"), Path.Combine(_dir, "ca.key"));
        Assert.True(withKey.HasPrivateKey, "ca.crt with ca.key can issue more node certificates");
    }

    [Fact]
    public void A_node_certificate_is_accepted_by_its_CA_in_either_role()
    {
        using var authority = JobCertificates.CreateAuthority("demo", Month);
        using var node = JobCertificates.CreateNode(authority, "worker", Loopback, Month);

        foreach (var role in new[] { PeerRole.Server, PeerRole.Client, PeerRole.Node })
            Assert.True(JobCertificates.IsIssuedBy(node, authority, role, out var why), why);
        Assert.True(node.NotAfter <= authority.NotAfter, "a node certificate never outlives its CA");
    }

    [Theory]
    [InlineData("other-job", "but by")]
    [InlineData("demo", "bears the job CA's name")]                       // a second `pretrain certs` for the same job
    public void A_node_certificate_of_another_CA_is_refused_saying_so(string otherJob, string detail)
    {
        using var authority = JobCertificates.CreateAuthority("demo", Month);
        using var other = JobCertificates.CreateAuthority(otherJob, Month);
        using var stranger = JobCertificates.CreateNode(other, "worker", Loopback, Month);

        Assert.False(JobCertificates.IsIssuedBy(stranger, authority, out var why));
        Assert.Contains("is not issued by the job CA", why);
        Assert.Contains(detail, why);
    }

    [Fact]
    public void An_expired_node_certificate_is_refused_saying_when_it_expired()
    {
        var now = DateTimeOffset.UtcNow;
        using var authority = JobCertificates.CreateAuthority("demo", now.AddDays(-30), now.AddDays(30));
        using var expired = JobCertificates.CreateNode(authority, "worker", Loopback, now.AddDays(-20), now.AddDays(-10));

        Assert.False(JobCertificates.IsIssuedBy(expired, authority, out var why));
        Assert.Contains("expired at", why);
    }

    [Fact]
    public void A_certificate_without_clientAuth_is_refused_for_the_client_role_only()
    {
        using var authority = JobCertificates.CreateAuthority("demo", Month);
        using var serverOnly = ServerOnlyCertificate(authority);

        Assert.True(JobCertificates.IsIssuedBy(serverOnly, authority, PeerRole.Server, out var asServer), asServer);
        Assert.False(JobCertificates.IsIssuedBy(serverOnly, authority, PeerRole.Client, out var why));
        Assert.Contains("clientAuth", why);
    }

    [Fact]
    public void The_CA_certificate_itself_is_not_accepted_as_a_node()
    {
        using var authority = JobCertificates.CreateAuthority("demo", Month);
        Assert.False(JobCertificates.IsIssuedBy(authority, authority, out var why));
        Assert.Contains("not a node certificate", why);
    }

    [Fact]
    public void Loading_a_missing_or_garbled_file_names_it()
    {
        string missing = Path.Combine(_dir, "nope.crt");
        Assert.Contains(missing, Assert.Throws<CertificateException>(() => JobCertificates.LoadAuthority(missing)).Message);
        string garbled = Path.Combine(_dir, "garbled.pfx");
        File.WriteAllText(garbled, "not a PKCS#12 file");
        Assert.Contains(garbled, Assert.Throws<CertificateException>(() => JobCertificates.LoadNode(garbled)).Message);
        string notPem = Path.Combine(_dir, "ca.crt");
        File.WriteAllText(notPem, "hello");
        Assert.Contains(notPem, Assert.Throws<CertificateException>(() => JobCertificates.LoadAuthority(notPem)).Message);
    }

    [Fact]
    public void Pretrain_certs_writes_the_CA_and_default_nodes_with_private_keys_0600()
    {
        var (code, output) = RunCli("certs", "--out", _dir);

        Assert.True(code == 0, output);
        foreach (var name in new[] { "ca.crt", "coordinator.crt", "worker.crt" })
            Assert.True(File.Exists(Path.Combine(_dir, name)), $"{name} missing. Output:\n{output}");
        foreach (var name in new[] { "ca.key", "coordinator.pfx", "coordinator.key", "worker.pfx", "worker.key" })
            Assert.Equal(OwnerOnly, File.GetUnixFileMode(Path.Combine(_dir, name)));
        Assert.Contains("worker.pfx", output);
        Assert.Empty(Directory.GetFiles(_dir, "*.tmp"));
        using var authority = JobCertificates.LoadAuthority(Path.Combine(_dir, "ca.crt"));
        foreach (var node in new[] { "coordinator", "worker" })
        {
            using var certificate = JobCertificates.LoadNode(Path.Combine(_dir, node + ".pfx"));
            Assert.True(JobCertificates.IsIssuedBy(certificate, authority, out var why), why);
        }
    }

    [Fact]
    public void Pretrain_certs_refuses_to_replace_an_existing_CA_without_force_naming_the_file()
    {
        Assert.Equal(0, RunCli("certs", "--out", _dir).Code);
        string ca = Path.Combine(_dir, "ca.crt");
        var before = File.ReadAllBytes(ca);

        var (code, output) = RunCli("certs", "--out", _dir);
        Assert.True(code == 2, output);
        Assert.Contains(ca, output);
        Assert.Contains("--force", output);
        Assert.Equal(before, File.ReadAllBytes(ca));

        Assert.Equal(0, RunCli("certs", "--out", _dir, "--force").Code);
        Assert.NotEqual(before, File.ReadAllBytes(ca));
    }

    [Fact]
    public void Pretrain_certs_add_issues_another_node_from_the_existing_CA()
    {
        Assert.Equal(0, RunCli("certs", "--out", _dir).Code);
        var (code, output) = RunCli("certs", "--out", _dir, "--add", "--node", "worker-7=10.0.0.7,worker-7.workers");
        Assert.True(code == 0, output);

        using var authority = JobCertificates.LoadAuthority(Path.Combine(_dir, "ca.crt"));
        using var added = JobCertificates.LoadNode(Path.Combine(_dir, "worker-7.pfx"));
        Assert.True(JobCertificates.IsIssuedBy(added, authority, out var why), why);
    }

    [Fact]
    public void Pretrain_certs_refuses_a_node_name_that_cannot_be_a_file_with_exit_2()
    {
        var (code, output) = RunCli("certs", "--out", _dir, "--node", "../escape");
        Assert.True(code == 2, output);
        Assert.Contains("'../escape'", output);
        Assert.False(File.Exists(Path.Combine(_dir, "ca.crt")), "nothing may be written for a refused node");
    }

    /// <summary>The real CLI in this process, its output captured. Test collections run one at a time (xunit.runner.json).</summary>
    static (int Code, string Output) RunCli(params string[] args)
    {
        var (stdout, stderr) = (Console.Out, Console.Error);
        using var captured = new StringWriter();
        Console.SetOut(captured);
        Console.SetError(captured);
        try
        {
            int code = Program.Run(args, PlanCatalog.Product);
            return (code, captured.ToString());
        }
        finally
        {
            Console.SetOut(stdout);
            Console.SetError(stderr);
        }
    }

    /// <summary>A certificate from the job CA that allows serverAuth alone, as another tool might make.</summary>
    static X509Certificate2 ServerOnlyCertificate(X509Certificate2 authority)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=server-only", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(new OidCollection { new Oid("1.3.6.1.5.5.7.3.1") }, critical: false));
        var now = DateTimeOffset.UtcNow;
        using var signed = request.Create(authority, now.AddMinutes(-1), now.AddDays(1), RandomNumberGenerator.GetBytes(8));
        return signed.CopyWithPrivateKey(key);
    }

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }
}
