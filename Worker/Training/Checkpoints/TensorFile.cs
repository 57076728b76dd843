using System.Text;
using static TorchSharp.torch;

namespace Pretrain.Worker.Training.Checkpoints;

/// <summary>
/// Our own tensor file, readable without TorchSharp. Layout, all little-endian:
/// <code>
///   "PTTENSOR" (8 ASCII bytes) | uint32 version = 1 | uint32 count
///   count × { uint16 nameBytes | name (UTF-8) | uint8 dtype (TorchSharp ScalarType code: 6 = float32)
///             | uint8 rank | int64 shape[rank] | int64 dataBytes | data (raw, row-major, little-endian) }
/// </code>
/// Tensors stream straight from and into their native storage: no managed copy of the data.
/// </summary>
public static class TensorFile
{
    private static readonly byte[] Magic = "PTTENSOR"u8.ToArray();
    private const uint Version = 1;

    public static void Write(string path, IEnumerable<(string Name, Tensor Tensor)> tensors)
    {
        if (!BitConverter.IsLittleEndian)
            throw new PlatformNotSupportedException("tensor files are little-endian; this machine is not");
        var list = tensors.ToList();
        using var stream = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16);
        using var writer = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true);
        writer.Write(Magic);
        writer.Write(Version);
        writer.Write((uint)list.Count);
        foreach (var (name, tensor) in list)
        {
            var nameBytes = Encoding.UTF8.GetBytes(name);
            writer.Write((ushort)nameBytes.Length);
            writer.Write(nameBytes);
            writer.Write((byte)tensor.dtype);
            writer.Write((byte)tensor.dim());
            foreach (var size in tensor.shape)
                writer.Write(size);
            var data = tensor.bytes;
            writer.Write((long)data.Length);
            writer.Flush();
            stream.Write(data);
        }
        writer.Flush();
        stream.Flush(flushToDisk: true); // fsync: the rename that publishes the checkpoint must follow durable data
    }

    /// <summary>
    /// Reads every tensor of <paramref name="path"/> into the tensor of the same name in
    /// <paramref name="targets"/>, checking dtype and shape; every target must be present in the file.
    /// </summary>
    public static void Read(string path, IReadOnlyDictionary<string, Tensor> targets)
    {
        try
        {
            ReadAll(path, targets);
        }
        catch (EndOfStreamException e)
        {
            throw new InvalidDataException($"{path}: truncated tensor file: it ends inside a tensor's header or data", e);
        }
    }

    private static void ReadAll(string path, IReadOnlyDictionary<string, Tensor> targets)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        using var reader = new BinaryReader(stream, Encoding.UTF8, leaveOpen: true);
        var count = ReadPreamble(path, reader);
        var seen = new HashSet<string>();
        for (var i = 0; i < count; i++)
        {
            var name = Encoding.UTF8.GetString(reader.ReadBytes(reader.ReadUInt16()));
            var dtype = (ScalarType)reader.ReadByte();
            var shape = new long[reader.ReadByte()];
            for (var d = 0; d < shape.Length; d++)
                shape[d] = reader.ReadInt64();
            var dataBytes = reader.ReadInt64();
            if (!targets.TryGetValue(name, out var target))
                throw new InvalidDataException($"{path}: tensor '{name}' has no counterpart in this model or optimizer");
            if (target.dtype != dtype || !target.shape.SequenceEqual(shape))
                throw new InvalidDataException(
                    $"{path}: tensor '{name}' is {dtype}[{string.Join(",", shape)}], expected {target.dtype}[{string.Join(",", target.shape)}]");
            var data = target.bytes;
            if (data.Length != dataBytes)
                throw new InvalidDataException($"{path}: tensor '{name}' has {dataBytes} bytes, expected {data.Length}");
            stream.ReadExactly(data);
            seen.Add(name);
        }
        var missing = targets.Keys.Where(k => !seen.Contains(k)).ToList();
        if (missing.Count > 0)
            throw new InvalidDataException($"{path}: missing tensors {string.Join(", ", missing.Take(5))}");
    }

    /// <summary>
    /// Every tensor of <paramref name="path"/> in file order, as stored: name, dtype code, shape and where its data
    /// lies, without reading the data and without TorchSharp (libtorch is not loaded). For tools that copy tensors
    /// as bytes (<c>pretrain export</c>). Names must be unique, dimensions not negative, every tensor's data within
    /// the file and nothing after the last; otherwise throws <see cref="InvalidDataException"/> naming the file and the tensor.
    /// </summary>
    public static IReadOnlyList<TensorEntry> ReadIndex(string path)
    {
        try
        {
            return Index(path);
        }
        catch (EndOfStreamException e)
        {
            throw new InvalidDataException($"{path}: truncated tensor file: it ends inside a tensor's header", e);
        }
    }

    private static List<TensorEntry> Index(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 12);
        using var reader = new BinaryReader(stream, Encoding.UTF8, leaveOpen: true);
        var count = ReadPreamble(path, reader);
        var entries = new List<TensorEntry>();    // not sized by count: a damaged count must not allocate
        var names = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0u; i < count; i++)
        {
            var nameLength = reader.ReadUInt16();
            var nameBytes = reader.ReadBytes(nameLength);
            if (nameBytes.Length != nameLength)
                throw new EndOfStreamException();
            var name = Encoding.UTF8.GetString(nameBytes);
            var dtype = reader.ReadByte();
            var shape = new long[reader.ReadByte()];
            for (var d = 0; d < shape.Length; d++)
                shape[d] = reader.ReadInt64();
            var dataBytes = reader.ReadInt64();
            var offset = stream.Position;
            if (!names.Add(name))
                throw new InvalidDataException($"{path}: tensor '{name}' appears twice");
            if (shape.Any(size => size < 0))
                throw new InvalidDataException($"{path}: tensor '{name}' has a negative dimension [{string.Join(",", shape)}]");
            if (dataBytes < 0 || dataBytes > stream.Length - offset)
                throw new InvalidDataException(
                    $"{path}: tensor '{name}' claims {dataBytes} bytes of data at offset {offset}, but the file has {stream.Length - offset} bytes left");
            entries.Add(new TensorEntry(name, dtype, shape, offset, dataBytes));
            stream.Seek(dataBytes, SeekOrigin.Current);
        }
        if (stream.Position != stream.Length)
            throw new InvalidDataException($"{path}: {stream.Length - stream.Position} bytes follow the last of its {count} tensors");
        return entries;
    }

    /// <summary>Checks the magic and version; returns the tensor count.</summary>
    private static uint ReadPreamble(string path, BinaryReader reader)
    {
        if (!reader.ReadBytes(Magic.Length).AsSpan().SequenceEqual(Magic) || reader.ReadUInt32() != Version)
            throw new InvalidDataException($"{path}: not a version {Version} tensor file (expected magic PTTENSOR)");
        return reader.ReadUInt32();
    }
}

/// <summary>One tensor of a tensor file as stored, without its data (<see cref="TensorFile.ReadIndex"/>).</summary>
/// <param name="Name">Its name in the checkpoint: a parameter's or a state tensor's (<c>encoder.conv1.weight</c>, <c>queue</c>).</param>
/// <param name="Dtype">TorchSharp's ScalarType code, which is libtorch's (0 uint8, 1 int8, 2 int16, 3 int32, 4 int64, 5 float16, 6 float32, 7 float64, 11 bool, 15 bfloat16).</param>
/// <param name="Shape">Its dimensions, outermost first; empty for a scalar.</param>
/// <param name="DataOffset">Where its raw bytes start in the file (row-major, little-endian).</param>
/// <param name="DataBytes">How many bytes they are.</param>
public sealed record TensorEntry(string Name, byte Dtype, IReadOnlyList<long> Shape, long DataOffset, long DataBytes);
