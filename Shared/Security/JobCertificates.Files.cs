using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Pretrain.Shared.IO;

namespace Pretrain.Shared.Security;

/// <summary>A node certificate to issue: the name of its files and subject, and the DNS names and IP addresses it is for.</summary>
public sealed record NodeRequest(string Name, IReadOnlyList<string> Hosts);

/// <summary>A node's certificate (with its private key) and the name its files take.</summary>
public sealed record NodeCertificate(string Name, X509Certificate2 Certificate);

/// <summary>A file written, and what it is for (printed by `pretrain certs`).</summary>
public sealed record WrittenFile(string Path, string Description);

// The files: ca.crt (PEM, public), ca.key (PEM PKCS#8, 0600) and per node NAME.pfx (PKCS#12 with its key, for .NET and
// Akka's `ssl.certificate.path`), NAME.crt and NAME.key (PEM, for other tools), every private key 0600.
//
// NAME.pfx has an empty password, on purpose: what protects it is its 0600 mode (or the Kubernetes Secret it is
// mounted from). A password would sit beside it with the same mode in the same Secret, so it would guard nothing,
// and Akka's `ssl.certificate.password` defaults to "". .NET on Linux loads a PKCS#12 with an empty password.
public static partial class JobCertificates
{
    public const string AuthorityCertificateFile = "ca.crt";
    public const string AuthorityKeyFile = "ca.key";

    /// <summary>Owner read and write only: the mode of every file holding a private key.</summary>
    const UnixFileMode OwnerOnly = UnixFileMode.UserRead | UnixFileMode.UserWrite;

    /// <summary>
    /// Makes a new job CA and a certificate for each of <paramref name="nodes"/> in <paramref name="outDirectory"/>
    /// (created if need be). An existing CA there is replaced only with <paramref name="replaceAuthority"/>: every
    /// certificate it issued would stop being trusted.
    /// </summary>
    public static IReadOnlyList<WrittenFile> IssueDirectory(string outDirectory, string jobName, IReadOnlyList<NodeRequest> nodes,
        TimeSpan validity, bool replaceAuthority)
    {
        RefuseExistingAuthority(outDirectory, replaceAuthority);        // before any work: nothing is written when refused
        using var authority = CreateAuthority(jobName, validity);
        var issued = Issue(authority, nodes, validity);
        try { return WriteDirectory(outDirectory, authority, issued, replaceAuthority); }
        finally { foreach (var node in issued) node.Certificate.Dispose(); }
    }

    /// <summary>Certificates for more nodes from the CA already in <paramref name="outDirectory"/> (its ca.crt and ca.key).</summary>
    public static IReadOnlyList<WrittenFile> AddNodes(string outDirectory, IReadOnlyList<NodeRequest> nodes, TimeSpan validity)
    {
        using var authority = LoadAuthority(Path.Combine(outDirectory, AuthorityCertificateFile), Path.Combine(outDirectory, AuthorityKeyFile));
        var issued = Issue(authority, nodes, validity);
        try { return WriteNodes(outDirectory, issued); }
        finally { foreach (var node in issued) node.Certificate.Dispose(); }
    }

    /// <summary>
    /// Writes the CA (its certificate, and its key when it holds one) and the nodes into <paramref name="outDirectory"/>.
    /// Refuses, naming the file, to replace a CA already there unless <paramref name="replaceAuthority"/>.
    /// </summary>
    public static IReadOnlyList<WrittenFile> WriteDirectory(string outDirectory, X509Certificate2 authority, IReadOnlyList<NodeCertificate> nodes,
        bool replaceAuthority)
    {
        RefuseExistingAuthority(outDirectory, replaceAuthority);
        Directory.CreateDirectory(outDirectory);
        var written = new List<WrittenFile>();
        string certificate = Path.Combine(outDirectory, AuthorityCertificateFile);
        WriteFile(certificate, Encoding.ASCII.GetBytes(authority.ExportCertificatePem() + "\n"), secret: false);
        written.Add(new(certificate, "job CA certificate: every node trusts the peers it issued"));
        if (PrivateKey(authority) is { } key)
        {
            using (key)
            {
                string keyFile = Path.Combine(outDirectory, AuthorityKeyFile);
                WriteSecret(keyFile, Encoding.ASCII.GetBytes(key.ExportPkcs8PrivateKeyPem() + "\n"));
                written.Add(new(keyFile, "job CA private key (0600): keep it off the nodes; `pretrain certs --add` issues more node certificates with it"));
            }
        }
        written.AddRange(WriteNodes(outDirectory, nodes));
        return written;
    }

    /// <summary>Writes NAME.pfx, NAME.crt and NAME.key for each node, replacing earlier ones of the same name.</summary>
    public static IReadOnlyList<WrittenFile> WriteNodes(string outDirectory, IReadOnlyList<NodeCertificate> nodes)
    {
        Directory.CreateDirectory(outDirectory);
        var written = new List<WrittenFile>();
        foreach (var (name, certificate) in nodes)
        {
            CheckNodeName(name);
            using var key = PrivateKey(certificate) ?? throw new CertificateException($"node '{name}': its certificate has no private key to write");
            string pfx = Path.Combine(outDirectory, name + ".pfx");
            WriteSecret(pfx, certificate.ExportPkcs12(Pkcs12ExportPbeParameters.Pbes2Aes256Sha256, password: ""));
            written.Add(new(pfx, $"node '{name}': PKCS#12 with its key, empty password (0600) — for Akka's ssl.certificate.path and the data plane"));
            string crt = Path.Combine(outDirectory, name + ".crt");
            WriteFile(crt, Encoding.ASCII.GetBytes(certificate.ExportCertificatePem() + "\n"), secret: false);
            written.Add(new(crt, $"node '{name}': certificate (PEM)"));
            string keyFile = Path.Combine(outDirectory, name + ".key");
            WriteSecret(keyFile, Encoding.ASCII.GetBytes(key.ExportPkcs8PrivateKeyPem() + "\n"));
            written.Add(new(keyFile, $"node '{name}': private key (PEM PKCS#8, 0600)"));
        }
        DirectorySync.Flush(outDirectory);
        return written;
    }

    /// <summary>
    /// The job CA from its PEM certificate; with <paramref name="caKeyPath"/> also its private key, to issue node
    /// certificates. Throws a <see cref="CertificateException"/> naming the file when it is missing, unreadable, not a
    /// PEM certificate or not a CA.
    /// </summary>
    public static X509Certificate2 LoadAuthority(string caCrtPath, string? caKeyPath = null)
    {
        string files = caKeyPath == null ? caCrtPath : $"{caCrtPath} with {caKeyPath}";
        var authority = Read(files, "a PEM certificate" + (caKeyPath == null ? "" : " and its PEM private key"), () =>
            caKeyPath == null ? X509Certificate2.CreateFromPem(File.ReadAllText(caCrtPath)) : X509Certificate2.CreateFromPemFile(caCrtPath, caKeyPath));
        if (authority.Extensions[BasicConstraintsOid] is not X509BasicConstraintsExtension { CertificateAuthority: true })
        {
            string subject = authority.Subject;
            authority.Dispose();
            throw new CertificateException($"{caCrtPath} holds '{subject}', which is not a certificate authority (`pretrain certs` writes the job CA as {AuthorityCertificateFile})");
        }
        return authority;
    }

    /// <summary>
    /// A node's certificate with its private key from a PKCS#12 file (NAME.pfx; empty password unless given).
    /// Throws a <see cref="CertificateException"/> naming the file when it is missing, unreadable, not PKCS#12 (or the
    /// password is wrong) or holds no private key.
    /// </summary>
    public static X509Certificate2 LoadNode(string pfxPath, string? password = null)
    {
        var node = Read(pfxPath, "a PKCS#12 file" + (string.IsNullOrEmpty(password) ? " with an empty password" : " with this password"),
            () => X509CertificateLoader.LoadPkcs12FromFile(pfxPath, password ?? ""));
        if (!node.HasPrivateKey)
        {
            node.Dispose();
            throw new CertificateException($"{pfxPath} holds no private key: a node needs its certificate's key for TLS");
        }
        return node;
    }

    static List<NodeCertificate> Issue(X509Certificate2 authority, IReadOnlyList<NodeRequest> nodes, TimeSpan validity)
    {
        var duplicate = nodes.GroupBy(n => n.Name, StringComparer.OrdinalIgnoreCase).FirstOrDefault(g => g.Count() > 1);
        if (duplicate != null) throw new CertificateException($"node '{duplicate.Key}' is named twice: each node's files take its name");
        var issued = new List<NodeCertificate>();
        try
        {
            foreach (var node in nodes) issued.Add(new(node.Name, CreateNode(authority, node.Name, node.Hosts, validity)));
            return issued;
        }
        catch
        {
            foreach (var node in issued) node.Certificate.Dispose();
            throw;
        }
    }

    /// <summary>The CA file already in <paramref name="outDirectory"/> (ca.crt, else ca.key), or null when there is none.</summary>
    public static string? ExistingAuthority(string outDirectory) =>
        new[] { AuthorityCertificateFile, AuthorityKeyFile }.Select(f => Path.Combine(outDirectory, f)).FirstOrDefault(File.Exists);

    static void RefuseExistingAuthority(string outDirectory, bool replaceAuthority)
    {
        if (!replaceAuthority && ExistingAuthority(outDirectory) is { } existing)
            throw new CertificateException($"{existing} already exists: {outDirectory} holds a job CA, and replacing it would leave " +
                                           "every certificate it issued untrusted");
    }

    static AsymmetricAlgorithm? PrivateKey(X509Certificate2 certificate) =>
        certificate.HasPrivateKey ? (AsymmetricAlgorithm?)certificate.GetECDsaPrivateKey() ?? certificate.GetRSAPrivateKey() : null;

    /// <summary>Runs <paramref name="load"/>, turning what a bad or missing file throws into one error naming <paramref name="files"/>.</summary>
    static X509Certificate2 Read(string files, string expected, Func<X509Certificate2> load)
    {
        try
        {
            return load();
        }
        catch (FileNotFoundException e)
        {
            throw new CertificateException($"{e.FileName ?? files} does not exist", e);
        }
        catch (DirectoryNotFoundException e)
        {
            throw new CertificateException($"{files} does not exist ({e.Message})", e);
        }
        catch (UnauthorizedAccessException e)
        {
            throw new CertificateException($"{files} cannot be read (permission denied)", e);
        }
        catch (Exception e) when (e is CryptographicException or ArgumentException)
        {
            // ArgumentException: CreateFromPem finds no PEM block of the expected kind.
            throw new CertificateException($"{files} is not {expected}: {e.Message}", e);
        }
    }

    /// <summary>A private key's file: created 0600 from the first byte, never readable by others even for a moment.</summary>
    static void WriteSecret(string path, byte[] content)
    {
        try { WriteFile(path, content, secret: true); }
        finally { CryptographicOperations.ZeroMemory(content); }
    }

    /// <summary>
    /// Writes through a temporary file renamed over <paramref name="path"/>: a reader never sees half a key, and a
    /// replaced key file takes the new file's mode rather than keeping an old, wider one.
    /// </summary>
    static void WriteFile(string path, ReadOnlySpan<byte> content, bool secret)
    {
        string temporary = $"{path}.{Environment.ProcessId}.tmp";
        var options = new FileStreamOptions { Mode = FileMode.Create, Access = FileAccess.Write, Share = FileShare.None };
        if (secret) CreateOwnerOnly(options);
        try
        {
            using (var stream = new FileStream(temporary, options))
            {
                stream.Write(content);
                stream.Flush(flushToDisk: true);
            }
            // The create mode passes through the umask and does not apply to a left-over temporary file: set it outright.
            if (secret) MakeOwnerOnly(temporary);
            File.Move(temporary, path, overwrite: true);
        }
        catch
        {
            try { File.Delete(temporary); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            throw;
        }
    }

    /// <summary>Unix only: Windows has no file mode (ACLs instead), and the files are made for Linux nodes.</summary>
    static void CreateOwnerOnly(FileStreamOptions options)
    {
        if (OperatingSystem.IsWindows()) return;
        options.UnixCreateMode = OwnerOnly;
    }

    static void MakeOwnerOnly(string path)
    {
        if (OperatingSystem.IsWindows()) return;
        File.SetUnixFileMode(path, OwnerOnly);
    }
}
