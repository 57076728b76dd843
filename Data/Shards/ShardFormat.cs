using System.Buffers.Binary;

namespace Pretrain.Data.Shards;

/// <summary>What a shard's records are.</summary>
public enum ShardKind : byte
{
    Tokens = 1, // variable-length token sequences (one document, or one packed run, per record)
    Images = 2, // fixed-shape images, CHW, one per record
}

/// <summary>Element type of a shard's records; the code is the byte stored in the header.</summary>
public enum ShardDType : byte
{
    UInt8 = 1,
    UInt16 = 2, // token ids below 65,536: byte-level (259) or a compacted vocabulary
    Int32 = 3,  // token ids of cl100k_base (100,277) and o200k_base (200,019)
}

/// <summary>
/// How a shard's records look: kind, element type, and a fixed shape (empty = variable-length records),
/// and whether each record carries an int32 label (kept for evaluation only).
/// </summary>
public sealed record ShardLayout(ShardKind Kind, ShardDType DType, IReadOnlyList<int> Shape, bool HasLabels)
{
    /// <summary>Variable-length token records, no labels.</summary>
    public static ShardLayout Tokens(ShardDType dtype) => new(ShardKind.Tokens, dtype, [], false);

    /// <summary>uint8 images of shape (channels, height, width), e.g. (1, 28, 28) for Fashion-MNIST.</summary>
    public static ShardLayout Images(int channels, int height, int width, bool hasLabels) =>
        new(ShardKind.Images, ShardDType.UInt8, [channels, height, width], hasLabels);

    /// <summary>Elements per record when the shape is fixed, 0 when records vary in length.</summary>
    public long RecordElements => Shape.Count == 0 ? 0 : Shape.Aggregate(1L, (a, d) => a * d);

    public int ElementBytes => ShardFormat.ElementBytes(DType);
}

/// <summary>
/// The fixed 96-byte header at the start of every shard (byte by byte in docs/FORMATS.md). All integers
/// little-endian. The checksum is xxHash64 (seed 0) of the body [96, end) followed by header bytes
/// [24, 96): everything after the checksum field, hashed in the order the writer produces it (body while
/// streaming, header last, once counts and offsets are known), so writing never re-reads the file.
/// </summary>
public readonly record struct ShardHeader(
    ShardLayout Layout,
    long RecordCount,
    long IndexOffset,  // (count + 1) int64 element offsets into the data; 0 for fixed-shape records
    long LabelsOffset, // count int32 labels; 0 when the shard has none
    long DataOffset,   // always 96: records start right after the header
    long DataBytes,
    long FileBytes,
    ulong Checksum);

public static class ShardFormat
{
    public static ReadOnlySpan<byte> Magic => "PTSHARD\0"u8;
    public const uint Version = 1;
    public const int HeaderBytes = 96;    // 88 used, padded so records start 32-byte aligned for SIMD reads
    public const int ChecksumOffset = 16; // the hash covers every byte after this 8-byte field
    public const int HashedHeaderStart = ChecksumOffset + 8;
    public const int MaxRank = 3;
    private const byte LabelsFlag = 1;

    public static int ElementBytes(ShardDType dtype) => dtype switch
    {
        ShardDType.UInt8 => 1,
        ShardDType.UInt16 => 2,
        ShardDType.Int32 => 4,
        _ => throw new InvalidDataException($"unknown shard dtype code {(byte)dtype}"),
    };

    public static string DTypeName(ShardDType dtype) => dtype switch
    {
        ShardDType.UInt8 => "uint8",
        ShardDType.UInt16 => "uint16",
        ShardDType.Int32 => "int32",
        _ => throw new InvalidDataException($"unknown shard dtype code {(byte)dtype}"),
    };

    public static void Write(Span<byte> header, in ShardHeader h)
    {
        header[..HeaderBytes].Clear();
        Magic.CopyTo(header);
        BinaryPrimitives.WriteUInt32LittleEndian(header[8..], Version);
        BinaryPrimitives.WriteUInt32LittleEndian(header[12..], HeaderBytes);
        BinaryPrimitives.WriteUInt64LittleEndian(header[16..], h.Checksum);
        header[24] = (byte)h.Layout.Kind;
        header[25] = (byte)h.Layout.DType;
        header[26] = h.Layout.HasLabels ? LabelsFlag : (byte)0;
        header[27] = (byte)h.Layout.Shape.Count;
        for (var i = 0; i < h.Layout.Shape.Count; i++)
            BinaryPrimitives.WriteUInt32LittleEndian(header[(28 + 4 * i)..], (uint)h.Layout.Shape[i]);
        BinaryPrimitives.WriteInt64LittleEndian(header[40..], h.RecordCount);
        BinaryPrimitives.WriteInt64LittleEndian(header[48..], h.IndexOffset);
        BinaryPrimitives.WriteInt64LittleEndian(header[56..], h.LabelsOffset);
        BinaryPrimitives.WriteInt64LittleEndian(header[64..], h.DataOffset);
        BinaryPrimitives.WriteInt64LittleEndian(header[72..], h.DataBytes);
        BinaryPrimitives.WriteInt64LittleEndian(header[80..], h.FileBytes);
    }

    /// <summary>Parses and bounds-checks a header; every failure names the file, the offset and what was expected.</summary>
    public static ShardHeader Read(string path, ReadOnlySpan<byte> header, long fileBytes)
    {
        if (fileBytes < HeaderBytes)
            throw new InvalidDataException($"{path}: truncated shard: {fileBytes} bytes, expected at least the {HeaderBytes}-byte header");
        if (!header[..8].SequenceEqual(Magic))
            throw new InvalidDataException($"{path}: offset 0: expected magic \"PTSHARD\\0\", found {Convert.ToHexString(header[..8])}");
        var version = BinaryPrimitives.ReadUInt32LittleEndian(header[8..]);
        if (version != Version || BinaryPrimitives.ReadUInt32LittleEndian(header[12..]) != HeaderBytes)
            throw new InvalidDataException($"{path}: offset 8: expected shard format version {Version} with a {HeaderBytes}-byte header, found version {version}");
        var kind = (ShardKind)header[24];
        var dtype = (ShardDType)header[25];
        int rank = header[27];
        if (!Enum.IsDefined(kind) || !Enum.IsDefined(dtype) || rank > MaxRank || header[26] > LabelsFlag)
            throw new InvalidDataException($"{path}: offset 24: expected kind 1-2, dtype 1-3, flags 0-1 and rank 0-{MaxRank}, found {header[24]}, {header[25]}, {header[26]}, {rank}");
        var shape = new int[rank];
        for (var i = 0; i < rank; i++)
        {
            var size = BinaryPrimitives.ReadUInt32LittleEndian(header[(28 + 4 * i)..]);
            if (size > int.MaxValue)
                throw new InvalidDataException($"{path}: offset {28 + 4 * i}: record dimension {i} is {size}, expected at most {int.MaxValue}");
            shape[i] = (int)size;
        }
        var h = new ShardHeader(new ShardLayout(kind, dtype, shape, header[26] == LabelsFlag),
            RecordCount: BinaryPrimitives.ReadInt64LittleEndian(header[40..]),
            IndexOffset: BinaryPrimitives.ReadInt64LittleEndian(header[48..]),
            LabelsOffset: BinaryPrimitives.ReadInt64LittleEndian(header[56..]),
            DataOffset: BinaryPrimitives.ReadInt64LittleEndian(header[64..]),
            DataBytes: BinaryPrimitives.ReadInt64LittleEndian(header[72..]),
            FileBytes: BinaryPrimitives.ReadInt64LittleEndian(header[80..]),
            Checksum: BinaryPrimitives.ReadUInt64LittleEndian(header[16..]));
        if (h.FileBytes != fileBytes)
            throw new InvalidDataException($"{path}: truncated or extended shard: header says {h.FileBytes} bytes, file has {fileBytes}");
        CheckSections(path, h);
        return h;
    }

    private static void CheckSections(string path, in ShardHeader h)
    {
        // In 128 bits: every field is a 64-bit value from the file, and a record count near 2^61 must not wrap an
        // index end back inside the file (a fuzzed header did: 2^61 + 3 records "fit" 136 bytes).
        Int128 records = h.RecordCount, dataOffset = h.DataOffset, dataBytes = h.DataBytes, file = h.FileBytes, index = h.IndexOffset, labels = h.LabelsOffset;
        var fixedBytes = h.Layout.Shape.Aggregate(h.Layout.Shape.Count == 0 ? Int128.Zero : Int128.One, (a, d) => a * d) * h.Layout.ElementBytes;
        var ok = records >= 0 && dataOffset == HeaderBytes && dataBytes >= 0
            && dataOffset + dataBytes <= file
            && (fixedBytes == 0
                ? index >= dataOffset + dataBytes && index % 8 == 0 && index + (records + 1) * 8 <= file
                : index == 0 && dataBytes == records * fixedBytes)
            && (!h.Layout.HasLabels
                ? labels == 0
                : labels >= dataOffset + dataBytes && labels + records * 4 <= file);
        if (!ok)
            throw new InvalidDataException(
                $"{path}: offset 40: section bounds do not fit the file: {h.RecordCount} records, index at {h.IndexOffset}, " +
                $"labels at {h.LabelsOffset}, data {h.DataBytes} bytes at {h.DataOffset}, file {h.FileBytes} bytes");
    }
}
