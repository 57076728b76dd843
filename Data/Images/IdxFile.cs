using System.Buffers.Binary;
using System.IO.Compression;

namespace Pretrain.Data.Images;

/// <summary>
/// The idx format of MNIST and Fashion-MNIST (big-endian): uint32 magic 0x0000080D (unsigned bytes, D
/// dimensions), D uint32 sizes, then the bytes. Images are D = 3 (count, rows, columns), labels D = 1.
/// Files may be gzipped (detected by the gzip magic 1f 8b, not the name). Errors name the file, the
/// offset (in the decompressed stream) and what was expected.
/// </summary>
public static class IdxFile
{
    /// <summary>Reads an idx3 image file: (count, rows, columns, pixels row-major).</summary>
    public static (int Count, int Rows, int Columns, byte[] Pixels) ReadImages(string path)
    {
        var bytes = Decompress(path);
        var dims = Dimensions(path, bytes, 3);
        return (dims[0], dims[1], dims[2], Payload(path, bytes, dims, "images"));
    }

    /// <summary>Reads an idx1 label file: one byte per image.</summary>
    public static byte[] ReadLabels(string path)
    {
        var bytes = Decompress(path);
        return Payload(path, bytes, Dimensions(path, bytes, 1), "labels");
    }

    private static byte[] Decompress(string path)
    {
        var raw = File.ReadAllBytes(path);
        if (raw.Length < 2 || raw[0] != 0x1f || raw[1] != 0x8b)
            return raw;
        try
        {
            using var gzip = new GZipStream(new MemoryStream(raw), CompressionMode.Decompress);
            using var output = new MemoryStream(raw.Length * 2);
            gzip.CopyTo(output);
            return output.ToArray();
        }
        catch (InvalidDataException e)
        {
            throw new InvalidDataException($"{path}: expected a complete gzip stream ({e.Message})", e);
        }
    }

    private static int[] Dimensions(string path, byte[] bytes, int rank)
    {
        var expected = 0x0800u | (uint)rank;
        if (bytes.Length < 4)
            throw new InvalidDataException($"{path}: offset 0: expected idx magic 0x{expected:x8}, the file has only {bytes.Length} bytes");
        var magic = BinaryPrimitives.ReadUInt32BigEndian(bytes);
        if (magic != expected)
            throw new InvalidDataException($"{path}: offset 0: expected idx magic 0x{expected:x8} (unsigned bytes, {rank} dimensions), found 0x{magic:x8}");
        if (bytes.Length < 4 + 4 * rank)
            throw new InvalidDataException($"{path}: offset 4: expected {rank} uint32 dimension sizes, the file ends at {bytes.Length}");
        var dims = new int[rank];
        for (var i = 0; i < rank; i++)
        {
            var size = BinaryPrimitives.ReadUInt32BigEndian(bytes.AsSpan(4 + 4 * i));
            if (size == 0 || size > int.MaxValue)
                throw new InvalidDataException($"{path}: offset {4 + 4 * i}: expected a dimension size from 1 to {int.MaxValue}, found {size}");
            dims[i] = (int)size;
        }
        return dims;
    }

    private static byte[] Payload(string path, byte[] bytes, int[] dims, string what)
    {
        var offset = 4 + 4 * dims.Length;
        var expected = dims.Aggregate(1L, (a, d) => a * d);
        if (bytes.Length - offset != expected)
            throw new InvalidDataException(
                $"{path}: offset {offset}: expected {dims[0]} {what} of {string.Join("x", dims.Skip(1).DefaultIfEmpty(1))} bytes = {expected} bytes of data, " +
                $"found {bytes.Length - offset}{(bytes.Length - offset < expected ? " (truncated file, or a count larger than the file)" : "")}");
        return bytes[offset..];
    }
}
