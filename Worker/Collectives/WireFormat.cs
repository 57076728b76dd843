using System.Buffers.Binary;
using System.Text;

namespace Pretrain.Worker.Collectives;

/// <summary>Reply of a <see cref="DataPlaneListener"/> to a connection's handshake.</summary>
public enum HandshakeStatus
{
    Accepted = 0,
    /// <summary>The listener already serves a newer generation; the sender's generation is over.</summary>
    StaleGeneration = 1,
    /// <summary>The generation is not open (yet) on this listener; the sender may retry.</summary>
    NotReady = 2,
    /// <summary>Wrong world size, an unexpected sender rank, or a duplicate connection.</summary>
    Mismatch = 3,
    /// <summary>Not a data-plane handshake (magic or protocol version).</summary>
    BadProtocol = 4,
    /// <summary>The connection did not prove the generation's key.</summary>
    Unauthenticated = 5,
    /// <summary>The generation's ring is encrypted and the connection is plain TCP.</summary>
    TlsRequired = 6,
}

/// <summary>
/// How a ring connection proves it belongs to the generation (issue 14), a challenge-response under the generation's
/// key (<c>JobSecret.GenerationKey</c>) that binds both fresh nonces and the handshake header:
/// <code>
/// connector -> listener   hello:     header (32) | connector nonce (32)
/// listener  -> connector  challenge: status (4)  | listener nonce (32) | listener proof (32)
/// connector -> listener   proof:     connector proof (32)
/// listener  -> connector  verdict:   status (4)
/// </code>
/// The listener proves the key first, so a connector never sends its proof (or later its gradients) to an impostor; the
/// connector's proof covers the listener's fresh nonce, so a recorded handshake cannot be replayed. Only a verified
/// proof claims the rank's slot: a stranger's connection is closed without taking it. Every field has a fixed size:
/// nothing a peer sends makes the listener allocate.
/// </summary>
public static class RingAuthentication
{
    public const int NonceSize = 32;
    public const int ProofSize = Pretrain.Shared.Security.Hmac.Size;
    public const int HelloSize = Handshake.Size + NonceSize;
    public const int ChallengeSize = 4 + NonceSize + ProofSize;
    public const int VerdictSize = 4;

    public static byte[] ListenerProof(ReadOnlySpan<byte> key, ReadOnlySpan<byte> hello, ReadOnlySpan<byte> listenerNonce) =>
        Pretrain.Shared.Security.Hmac.Compute(key, "pretrain/ring/listener/v1", hello.ToArray(), listenerNonce.ToArray());

    public static byte[] ConnectorProof(ReadOnlySpan<byte> key, ReadOnlySpan<byte> hello, ReadOnlySpan<byte> listenerNonce) =>
        Pretrain.Shared.Security.Hmac.Compute(key, "pretrain/ring/connector/v1", hello.ToArray(), listenerNonce.ToArray());
}

/// <summary>What opens a ring connection: who is calling whom, in which generation.</summary>
public readonly record struct Handshake(long Generation, int SenderRank, int TargetRank, int WorldSize)
{
    public const int Size = 32;

    public void Write(Span<byte> b)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(b, WireFormat.HandshakeMagic);
        BinaryPrimitives.WriteUInt16LittleEndian(b[4..], WireFormat.ProtocolVersion);
        BinaryPrimitives.WriteUInt16LittleEndian(b[6..], 0);
        BinaryPrimitives.WriteInt64LittleEndian(b[8..], Generation);
        BinaryPrimitives.WriteInt32LittleEndian(b[16..], SenderRank);
        BinaryPrimitives.WriteInt32LittleEndian(b[20..], TargetRank);
        BinaryPrimitives.WriteInt32LittleEndian(b[24..], WorldSize);
        BinaryPrimitives.WriteInt32LittleEndian(b[28..], 0);
    }

    /// <summary>Null when the bytes are not this protocol's handshake.</summary>
    public static Handshake? TryRead(ReadOnlySpan<byte> b) =>
        BinaryPrimitives.ReadUInt32LittleEndian(b) != WireFormat.HandshakeMagic
        || BinaryPrimitives.ReadUInt16LittleEndian(b[4..]) != WireFormat.ProtocolVersion
            ? null
            : new Handshake(BinaryPrimitives.ReadInt64LittleEndian(b[8..]), BinaryPrimitives.ReadInt32LittleEndian(b[16..]),
                BinaryPrimitives.ReadInt32LittleEndian(b[20..]), BinaryPrimitives.ReadInt32LittleEndian(b[24..]));
}

/// <summary>Collective kinds, carried in each call header so two ranks in different calls notice.</summary>
internal enum CollectiveOp : byte { AllReduceSum = 1, AllGather = 2, Broadcast = 3, AllReduceSumInt64 = 4 }

/// <summary>
/// Byte layouts on a ring connection. Data flows rank r -> r+1 as one 32-byte call header per call
/// followed by raw payload segments (both sides know every length, so segments need no framing).
/// The unused reverse direction (r+1 -> r) carries failure notices, so a failure travels backwards
/// round the ring without touching the data stream.
/// </summary>
internal static class WireFormat
{
    public const uint HandshakeMagic = 0x50445450;   // "PTDP"
    public const uint CallMagic = 0x4C434450;        // "PDCL"
    public const uint NoticeMagic = 0x464E4450;      // "PDNF"
    public const ushort ProtocolVersion = 3;     // 2: authenticated handshake (RingAuthentication); 3: then LinkNegotiation
    public const int CallHeaderSize = 32;
    public const int NoticeHeaderSize = 12;
    public const int MaxNoticeText = 1024;
    /// <summary>Failed-rank value of the notice a rank sends when it leaves a generation in good order.</summary>
    public const int LeftRank = -2;

    public static void WriteCallHeader(Span<byte> b, CollectiveOp op, long generation, long sequence, long length)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(b, CallMagic);
        BinaryPrimitives.WriteUInt32LittleEndian(b[4..], (uint)op);
        BinaryPrimitives.WriteInt64LittleEndian(b[8..], generation);
        BinaryPrimitives.WriteInt64LittleEndian(b[16..], sequence);
        BinaryPrimitives.WriteInt64LittleEndian(b[24..], length);
    }

    /// <summary>Null when the header matches what this rank expects, else what differs.</summary>
    public static string? CheckCallHeader(ReadOnlySpan<byte> b, CollectiveOp op, long generation, long sequence, long length)
    {
        if (BinaryPrimitives.ReadUInt32LittleEndian(b) != CallMagic) return "sent bytes that are not a call header (stream out of sync)";
        var (o, g, s, l) = ((CollectiveOp)BinaryPrimitives.ReadUInt32LittleEndian(b[4..]), BinaryPrimitives.ReadInt64LittleEndian(b[8..]),
            BinaryPrimitives.ReadInt64LittleEndian(b[16..]), BinaryPrimitives.ReadInt64LittleEndian(b[24..]));
        if (g != generation) return $"is in generation {g}, expected {generation}";
        if (s != sequence || o != op) return $"is in call #{s} ({o}), expected call #{sequence} ({op}): ranks issued collectives in different orders";
        return l != length ? $"called {op} with {l} bytes, this rank with {length}" : null;
    }

    /// <summary>Encodes "rank <paramref name="failedRank"/> failed: <paramref name="what"/>" for the reverse channel.</summary>
    /// <summary>Bit of the notice's length field that says the blame rests on a timeout (lengths stay below 1024).</summary>
    private const int TimedOutFlag = 1 << 30;

    /// <summary>The text length of a notice and whether its blame rests on a timeout.</summary>
    public static (int Length, bool TimedOut) NoticeLength(int field) => (field & ~TimedOutFlag, (field & TimedOutFlag) != 0);

    /// <summary>
    /// Reads a notice header: null when it is one (its failed rank, text length and timeout flag out), else what is wrong
    /// with it. The length is checked against <see cref="MaxNoticeText"/> before anyone allocates for the text.
    /// </summary>
    public static string? ReadNoticeHeader(ReadOnlySpan<byte> b, out int failedRank, out int length, out bool timedOut)
    {
        (failedRank, length, timedOut) = (0, 0, false);
        if (b.Length < NoticeHeaderSize) return $"a notice header is {NoticeHeaderSize} bytes, got {b.Length}";
        if (BinaryPrimitives.ReadUInt32LittleEndian(b) != NoticeMagic) return "not a notice (bad magic)";
        (length, timedOut) = NoticeLength(BinaryPrimitives.ReadInt32LittleEndian(b[8..]));
        if ((uint)length > MaxNoticeText) return $"a notice text of {length} bytes (at most {MaxNoticeText})";
        failedRank = BinaryPrimitives.ReadInt32LittleEndian(b[4..]);
        return null;
    }

    public static byte[] EncodeNotice(int failedRank, string what, bool timedOut = false)
    {
        var text = Encoding.UTF8.GetBytes(what.Length > MaxNoticeText / 4 ? what[..(MaxNoticeText / 4)] : what);
        var b = new byte[NoticeHeaderSize + text.Length];
        BinaryPrimitives.WriteUInt32LittleEndian(b, NoticeMagic);
        BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(4), failedRank);
        BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(8), text.Length | (timedOut ? TimedOutFlag : 0));
        text.CopyTo(b, NoticeHeaderSize);
        return b;
    }
}
