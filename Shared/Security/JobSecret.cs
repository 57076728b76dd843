using System.Security.Cryptography;
using System.Text;

namespace Pretrain.Shared.Security;

/// <summary>
/// A job's shared secret (brief, principle 8): every process that takes part proves it knows it — a worker when it
/// registers, each ring connection through the generation key derived from it — and it never travels itself. Kept
/// in a file (`pretrain local` writes one into the run directory with mode 0600; on Kubernetes a Secret mounted as a
/// file). Its bytes are never printed: <see cref="ToString"/> names the file only.
/// </summary>
public sealed class JobSecret
{
    /// <summary>128 bits: below that a brute force of the HMAC is thinkable; a 32-byte file is what <see cref="Create"/> writes.</summary>
    public const int MinimumBytes = 16;
    /// <summary>A secret file is small; a larger one is a wrong path (a dataset, a binary), refused before it is read whole.</summary>
    public const int MaximumBytes = 4096;
    public const string FileName = "secret";

    private readonly byte[] _key;

    private JobSecret(byte[] key, string source) => (_key, Source) = (key, source);

    /// <summary>Where the secret came from (a path), for messages.</summary>
    public string Source { get; }

    /// <summary>
    /// Reads <paramref name="path"/>: its bytes as they are, without a trailing newline (so `echo`/`kubectl create secret
    /// --from-literal` and a random binary file both work). Errors name the file and say what was expected.
    /// </summary>
    public static JobSecret Load(string path)
    {
        var full = Path.GetFullPath(path);
        FileInfo file = new(full);
        if (!file.Exists) throw new SecretException($"the secret file {full} does not exist (--secret-file or PRETRAIN_SECRET_FILE)");
        if (file.Length > MaximumBytes) throw new SecretException($"the secret file {full} holds {file.Length} bytes; a job secret is at most {MaximumBytes} (is it the right file?)");
        byte[] bytes;
        try { bytes = File.ReadAllBytes(full); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new SecretException($"the secret file {full} cannot be read: {e.Message}"); }
        int length = bytes.Length;
        while (length > 0 && bytes[length - 1] is (byte)'\n' or (byte)'\r') length--;
        if (length < MinimumBytes)
            throw new SecretException($"the secret file {full} holds {length} bytes; a job secret needs at least {MinimumBytes} " +
                                      "(make one with `head -c 32 /dev/urandom | base64 > FILE`)");
        return new JobSecret(bytes[..length], full);
    }

    /// <summary>
    /// Writes a fresh 32-byte random secret (base64 text) to <paramref name="path"/> with mode 0600, created so that no
    /// other user can ever read it (the mode is set at creation, not after), and returns it. An existing file is kept
    /// and loaded: a resumed run keeps its secret.
    /// </summary>
    public static JobSecret CreateOrLoad(string path)
    {
        var full = Path.GetFullPath(path);
        if (File.Exists(full)) return Load(full);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        var text = Encoding.ASCII.GetBytes(Convert.ToBase64String(RandomNumberGenerator.GetBytes(32)));
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows()) options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        using (var stream = new FileStream(full, options)) stream.Write(text);
        return new JobSecret(text, full);
    }

    /// <summary>A secret held in memory only (tests, benchmarks): nobody else can know it.</summary>
    public static JobSecret Random() => new(RandomNumberGenerator.GetBytes(32), "a random in-memory secret");

    /// <summary>For tests that must share a known secret between processes.</summary>
    public static JobSecret FromBytes(ReadOnlySpan<byte> key, string source) =>
        key.Length < MinimumBytes ? throw new SecretException($"{source}: a job secret needs at least {MinimumBytes} bytes") : new(key.ToArray(), source);

    /// <summary>HMAC-SHA256 under this secret of <paramref name="label"/> and then each part, length-prefixed (no two part lists encode alike).</summary>
    public byte[] Mac(string label, params ReadOnlySpan<byte[]> parts) => Hmac.Compute(_key, label, parts);

    /// <summary>
    /// The data-plane key of <paramref name="generation"/>: HMAC(secret, generation, salt), where the salt is the
    /// coordinator's fresh random draw for that generation (<c>GenerationStarted.KeySalt</c>). The key itself never
    /// travels and is never journaled; a ring connection proves it by a challenge-response (no replay), and a process
    /// that knows an old generation's key cannot enter a new one.
    /// </summary>
    public byte[] GenerationKey(long generation, string salt) =>
        Mac("pretrain/data-plane-key/v1", BitConverter.GetBytes(generation), Encoding.UTF8.GetBytes(salt));

    public override string ToString() => $"job secret from {Source}";
}

/// <summary>HMAC-SHA256 over a label and length-prefixed parts, and its constant-time comparison.</summary>
public static class Hmac
{
    public const int Size = 32;

    public static byte[] Compute(ReadOnlySpan<byte> key, string label, params ReadOnlySpan<byte[]> parts)
    {
        using var mac = IncrementalHash.CreateHMAC(HashAlgorithmName.SHA256, key);
        Append(mac, Encoding.UTF8.GetBytes(label));
        foreach (var part in parts) Append(mac, part);
        return mac.GetHashAndReset();
    }

    private static void Append(IncrementalHash mac, ReadOnlySpan<byte> part)
    {
        Span<byte> length = stackalloc byte[4];
        BitConverter.TryWriteBytes(length, part.Length);
        mac.AppendData(length);
        mac.AppendData(part);
    }

    /// <summary>True when <paramref name="proof"/> is exactly <paramref name="expected"/>, in time that does not depend on where they differ.</summary>
    public static bool Matches(ReadOnlySpan<byte> proof, ReadOnlySpan<byte> expected) =>
        proof.Length == expected.Length && CryptographicOperations.FixedTimeEquals(proof, expected);
}

/// <summary>A job secret that cannot be used: the message names the file and says what was expected.</summary>
public sealed class SecretException(string message) : Exception(message);
