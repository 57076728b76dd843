using System.Buffers.Binary;
using System.Net.Sockets;
using System.Security.Cryptography;
using Microsoft.Extensions.Logging;

namespace Pretrain.Worker.Collectives;

/// <summary>Which transport a listener chose for a link, and why not shared memory.</summary>
internal enum LinkChoice
{
    SharedMemory = 1,
    /// <summary>The connecting rank did not offer shared memory (its --transport is tcp, or it has no host id).</summary>
    TcpNotOffered = 2,
    /// <summary>The listening rank's --transport is tcp.</summary>
    TcpByListener = 3,
    /// <summary>The two ranks run on different hosts (or network namespaces).</summary>
    TcpOtherHost = 4,
    /// <summary>The listening rank could not make the ring's file (no /dev/shm, or no room in it).</summary>
    TcpNoRing = 5,
}

/// <summary>
/// How a proven ring connection will carry its data (issue 15), agreed right after the handshake
/// (<see cref="RingAuthentication"/>) on that connection, so the decision is made by the two processes that would share
/// memory, from what they see of themselves, and is authenticated like everything after the handshake:
/// <code>
/// connector -> listener   offer:   magic (4) | flags (4; bit 0: may share memory) | host id (32)
/// listener  -> connector  answer:  magic (4) | choice (4) | pid (4) | zero (4) | capacity (8) | name nonce (16) | token (16)
/// connector -> listener   confirm: magic (4) | mapped (4; 1 or 0)         (only after an answer of shared memory)
/// </code>
/// Shared memory is chosen when both ranks allow it (<see cref="CollectiveOptions.Transport"/>) and their host ids
/// (<see cref="HostIdentity"/>) are equal. The listening (receiving) rank then creates the ring's file, owner-only, under a
/// name the connector can rebuild from the generation, the ranks, the listener's pid and a fresh nonce (nothing in it is a
/// path the peer chose), and writes a fresh token into its header; the connector maps it, checks the token and confirms.
/// The listener unlinks the file as soon as the confirmation comes, mapped or not (and on any failure), so no name stays
/// behind while the ring is used. A connector that cannot map it confirms 0, and the link stays TCP — a peer in another
/// mount namespace with the same network namespace, say. An encrypted connection negotiates nothing: the user asked for
/// TLS, and data through memory would not be what they asked for. All messages have fixed sizes: nothing a peer sends
/// makes either side allocate.
/// </summary>
internal static class LinkNegotiation
{
    public const int OfferSize = 40, AnswerSize = 56, ConfirmSize = 8;
    private const uint OfferMagic = 0x4F544450;     // "PDTO"
    private const uint AnswerMagic = 0x41544450;    // "PDTA"
    private const uint ConfirmMagic = 0x43544450;   // "PDTC"
    private const int NonceSize = 16;

    public readonly record struct Offer(bool MayShare, byte[] HostId);

    public readonly record struct Answer(LinkChoice Choice, int ProcessId, int Capacity, byte[] Nonce, byte[] Token);

    /// <summary>The two ends of a link within its generation, which name the ring's file.</summary>
    public readonly record struct Ends(long Generation, int From, int To);

    public static void WriteOffer(Span<byte> b, bool mayShare, ReadOnlySpan<byte> hostId)
    {
        b[..OfferSize].Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(b, OfferMagic);
        BinaryPrimitives.WriteUInt32LittleEndian(b[4..], mayShare ? 1u : 0u);
        if (hostId.Length == HostIdentity.Size) hostId.CopyTo(b[8..]);
    }

    /// <summary>Null when <paramref name="b"/> is not an offer.</summary>
    public static Offer? ReadOffer(ReadOnlySpan<byte> b)
    {
        if (b.Length != OfferSize || BinaryPrimitives.ReadUInt32LittleEndian(b) != OfferMagic) return null;
        var flags = BinaryPrimitives.ReadUInt32LittleEndian(b[4..]);
        return flags > 1 ? null : new Offer(flags == 1, b.Slice(8, HostIdentity.Size).ToArray());
    }

    public static void WriteAnswer(Span<byte> b, LinkChoice choice, int processId = 0, int capacity = 0, ReadOnlySpan<byte> nonce = default, ReadOnlySpan<byte> token = default)
    {
        b[..AnswerSize].Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(b, AnswerMagic);
        BinaryPrimitives.WriteInt32LittleEndian(b[4..], (int)choice);
        BinaryPrimitives.WriteInt32LittleEndian(b[8..], processId);
        BinaryPrimitives.WriteInt64LittleEndian(b[16..], capacity);
        nonce.CopyTo(b[24..]);
        token.CopyTo(b[(24 + NonceSize)..]);
    }

    /// <summary>Null when <paramref name="b"/> is not an answer: a shared-memory answer needs a pid and a ring size we accept.</summary>
    public static Answer? ReadAnswer(ReadOnlySpan<byte> b)
    {
        if (b.Length != AnswerSize || BinaryPrimitives.ReadUInt32LittleEndian(b) != AnswerMagic) return null;
        var choice = (LinkChoice)BinaryPrimitives.ReadInt32LittleEndian(b[4..]);
        if (!Enum.IsDefined(choice)) return null;
        var (pid, capacity) = (BinaryPrimitives.ReadInt32LittleEndian(b[8..]), BinaryPrimitives.ReadInt64LittleEndian(b[16..]));
        if (choice == LinkChoice.SharedMemory && (pid <= 0 || !SharedRing.IsValidCapacity(capacity))) return null;
        if (choice != LinkChoice.SharedMemory && (pid != 0 || capacity != 0)) return null;
        return new Answer(choice, pid, (int)capacity, b.Slice(24, NonceSize).ToArray(), b.Slice(24 + NonceSize, SharedRing.TokenSize).ToArray());
    }

    public static void WriteConfirm(Span<byte> b, bool mapped)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(b, ConfirmMagic);
        BinaryPrimitives.WriteUInt32LittleEndian(b[4..], mapped ? 1u : 0u);
    }

    /// <summary>Null when <paramref name="b"/> is not a confirmation, else whether the connector mapped the ring.</summary>
    public static bool? ReadConfirm(ReadOnlySpan<byte> b)
    {
        if (b.Length != ConfirmSize || BinaryPrimitives.ReadUInt32LittleEndian(b) != ConfirmMagic) return null;
        return BinaryPrimitives.ReadUInt32LittleEndian(b[4..]) switch { 0 => false, 1 => true, _ => null };
    }

    /// <summary>The ring file's name: numbers and hex only, rebuilt by the connector from what it knows and the answer.</summary>
    public static string RingPath(string directory, int processId, Ends ends, ReadOnlySpan<byte> nonce) =>
        Path.Combine(directory, $"pretrain-ring-{processId}-g{ends.Generation}-{ends.From}to{ends.To}-{Convert.ToHexStringLower(nonce)}");

    /// <summary>The connecting (sending) rank's side: offer, take the answer, map the ring if chosen; the link and how it goes, for the log.</summary>
    public static async Task<(IRingLink Link, string How)> ConnectorAsync(RingLink link, Ends ends, CollectiveOptions options, ILogger log, CancellationToken ct)
    {
        if (link.IsEncrypted) return (link, "TLS");
        var hostId = options.HostIdentityOverride ?? HostIdentity.Current;
        var offer = options.Transport == TransportPolicy.Auto && hostId is not null;
        var message = new byte[AnswerSize];
        WriteOffer(message, offer, hostId);
        await link.SendAllAsync(message.AsMemory(0, OfferSize), ct);
        if (!await link.ReceiveExactlyAsync(message, ct)) throw new SocketException((int)SocketError.ConnectionReset);
        var answer = ReadAnswer(message) ?? throw new InvalidDataException("sent a malformed transport answer");
        if (answer.Choice != LinkChoice.SharedMemory)
            return (link, "TCP" + (answer.Choice == LinkChoice.TcpNotOffered ? (hostId is null ? " (no host id here)" : " (--transport tcp here)") : Why(answer.Choice, ends.To)));
        if (!offer) throw new InvalidDataException("answered shared memory to a connection that did not offer it");
        SharedRing? ring = null;
        string? problem = null;
        var path = RingPath(options.SharedMemoryDirectory, answer.ProcessId, ends, answer.Nonce);
        try { ring = SharedRing.Open(path, answer.Capacity, answer.Token); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException) { problem = e.Message; }
        WriteConfirm(message, ring is not null);
        try { await link.SendAllAsync(message.AsMemory(0, ConfirmSize), ct); }
        catch
        {
            ring?.Dispose();
            throw;
        }
        if (ring is null)
        {
            log.LogWarning("generation {Generation}: rank {From} could not map rank {To}'s shared ring ({Problem}); the link stays TCP",
                ends.Generation, ends.From, ends.To, problem);
            return (link, "TCP (the shared ring could not be mapped here)");
        }
        return (new SharedMemorySender(link, ring, options.SharedMemorySpin), $"shared memory ({Size(ring.Capacity)} ring)");
    }

    /// <summary>The listening (receiving) rank's side: take the offer, choose, make the ring if chosen and unlink it once confirmed.</summary>
    public static async Task<(IRingLink Link, string How)> ListenerAsync(RingLink link, Ends ends, CollectiveOptions options, ILogger log, CancellationToken ct)
    {
        if (link.IsEncrypted) return (link, "TLS");
        var message = new byte[AnswerSize];
        if (!await link.ReceiveExactlyAsync(message.AsMemory(0, OfferSize), ct)) throw new SocketException((int)SocketError.ConnectionReset);
        var offer = ReadOffer(message.AsSpan(0, OfferSize)) ?? throw new InvalidDataException("sent a malformed transport offer");
        var hostId = options.HostIdentityOverride ?? HostIdentity.Current;
        var choice = !offer.MayShare ? LinkChoice.TcpNotOffered
            : options.Transport != TransportPolicy.Auto ? LinkChoice.TcpByListener
            : hostId is null || !CryptographicOperations.FixedTimeEquals(hostId, offer.HostId) ? LinkChoice.TcpOtherHost
            : LinkChoice.SharedMemory;
        SharedRing? ring = null;
        var (nonce, token) = (RandomNumberGenerator.GetBytes(NonceSize), RandomNumberGenerator.GetBytes(SharedRing.TokenSize));
        var path = RingPath(options.SharedMemoryDirectory, Environment.ProcessId, ends, nonce);
        if (choice == LinkChoice.SharedMemory)
        {
            try { ring = SharedRing.Create(path, options.SharedMemoryRingBytes, token); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                log.LogWarning("generation {Generation}: rank {To} could not make a shared ring for rank {From} in {Directory} ({Problem}); the link stays TCP",
                    ends.Generation, ends.To, ends.From, options.SharedMemoryDirectory, e.Message);
                choice = LinkChoice.TcpNoRing;
            }
        }
        try
        {
            if (ring is null)
            {
                WriteAnswer(message, choice);
                await link.SendAllAsync(message, ct);
                return (link, "TCP" + (choice == LinkChoice.TcpByListener ? " (--transport tcp here)" : Why(choice, ends.From)));
            }
            WriteAnswer(message, choice, Environment.ProcessId, ring.Capacity, nonce, token);
            await link.SendAllAsync(message, ct);
            if (!await link.ReceiveExactlyAsync(message.AsMemory(0, ConfirmSize), ct)) throw new SocketException((int)SocketError.ConnectionReset);
            var mapped = ReadConfirm(message.AsSpan(0, ConfirmSize)) ?? throw new InvalidDataException("sent a malformed transport confirmation");
            if (!mapped) return (link, $"TCP (rank {ends.From} could not map the shared ring; see its log)");
            var receiver = new SharedMemoryReceiver(link, ring, options.SharedMemorySpin);
            var how = $"shared memory ({Size(ring.Capacity)} ring)";
            ring = null;   // the receiver's now
            return (receiver, how);
        }
        finally
        {
            ring?.Dispose();
            if (choice == LinkChoice.SharedMemory) Unlink(path, log);
        }
    }

    /// <summary>Why a link stays TCP, as the rank at the other end <paramref name="peer"/> sees it.</summary>
    private static string Why(LinkChoice choice, int peer) => choice switch
    {
        LinkChoice.TcpNotOffered => $" (rank {peer} did not offer shared memory)",
        LinkChoice.TcpByListener => $" (--transport tcp on rank {peer})",
        LinkChoice.TcpOtherHost => " (another host)",
        LinkChoice.TcpNoRing => $" (rank {peer} could not make a shared ring; see its log)",
        _ => "",
    };

    private static string Size(int bytes) => bytes >= 1 << 20 ? $"{bytes >> 20} MiB" : $"{bytes >> 10} KiB";

    private static void Unlink(string path, ILogger log)
    {
        try { File.Delete(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            log.LogWarning("could not remove the shared ring's file {Path}: {Problem}", path, e.Message);
        }
    }
}
