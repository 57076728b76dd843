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
        if (!reader.ReadBytes(Magic.Length).AsSpan().SequenceEqual(Magic) || reader.ReadUInt32() != Version)
            throw new InvalidDataException($"{path}: not a version {Version} tensor file (expected magic PTTENSOR)");
        var count = reader.ReadUInt32();
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
}
