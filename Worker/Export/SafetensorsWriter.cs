using System.Buffers;
using System.Buffers.Binary;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace Pretrain.Worker.Export;

/// <summary>
/// One tensor to write: its name in the file, dtype and shape, and where its raw bytes are — <see cref="Bytes"/>
/// bytes of <see cref="Source"/> from <see cref="Offset"/>, row-major and little-endian, as libtorch keeps them.
/// </summary>
public sealed record SafetensorsTensor(string Name, SafetensorsDtype Dtype, IReadOnlyList<long> Shape, Stream Source, long Offset)
{
    /// <summary>product(shape) × element size: what the format requires of end − begin.</summary>
    public long Bytes => Shape.Aggregate(1L, (product, size) => checked(product * size)) * Dtype.Size;
}

/// <summary>
/// Writes the safetensors format (Hugging Face's; read by <c>safetensors.torch.load_file</c>, transformers, timm):
/// <code>
///   uint64 N (little-endian) | N bytes of UTF-8 JSON header, padded with spaces | the tensors' bytes, back to back
/// </code>
/// The header maps each tensor's name to <c>{"dtype", "shape", "data_offsets": [begin, end]}</c> (offsets into the
/// bytes after the header, covering them without holes or overlap) and <c>"__metadata__"</c> to string pairs.
/// <para>
/// Two layout choices make the file cheap to read in place: the header is padded so the data starts at a multiple
/// of 8 bytes, and tensors are laid out by element size, largest first (in the given order within one size), so
/// every tensor starts at a multiple of its own element size and a memory-mapping reader can view an int64
/// tensor without copying it — the order the safetensors library itself writes.
/// </para>
/// </summary>
public static class SafetensorsWriter
{
    /// <summary>The data starts at a multiple of this many bytes from the start of the file.</summary>
    public const int Alignment = 8;

    /// <summary>The header key of the metadata; no tensor may be named so.</summary>
    public const string MetadataKey = "__metadata__";

    /// <summary>Readers refuse longer headers (the safetensors library's limit: 100 MB, some 500,000 tensors).</summary>
    public const int MaxHeaderBytes = 100_000_000;

    private const int CopyBufferBytes = 1 << 20; // 1 MiB: a ResNet-18 layer of 2.4 MB in 3 reads

    /// <summary>
    /// Writes <paramref name="tensors"/> and <paramref name="metadata"/> to <paramref name="output"/> from its current
    /// position; returns the bytes written. Throws <see cref="ArgumentException"/> naming the tensor when a name is
    /// empty, repeated or <see cref="MetadataKey"/>, or a dimension is negative, and <see cref="EndOfStreamException"/>
    /// when a source ends before a tensor's bytes do.
    /// </summary>
    public static long Write(Stream output, IReadOnlyList<SafetensorsTensor> tensors, IReadOnlyDictionary<string, string> metadata)
    {
        Validate(tensors);
        var ordered = tensors.OrderByDescending(t => t.Dtype.Size).ToList(); // stable: the given order within a size
        var header = Header(ordered, metadata);
        Span<byte> length = stackalloc byte[sizeof(ulong)];
        BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)header.Length);
        output.Write(length);
        output.Write(header);
        var written = (long)length.Length + header.Length;
        var buffer = ArrayPool<byte>.Shared.Rent(CopyBufferBytes);
        try
        {
            foreach (var tensor in ordered)
                written += Copy(tensor, output, buffer);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
        return written;
    }

    private static void Validate(IReadOnlyList<SafetensorsTensor> tensors)
    {
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var tensor in tensors)
        {
            if (string.IsNullOrEmpty(tensor.Name) || tensor.Name == MetadataKey)
                throw new ArgumentException($"a tensor may not be named '{tensor.Name}' in a safetensors file", nameof(tensors));
            if (!names.Add(tensor.Name))
                throw new ArgumentException($"tensor '{tensor.Name}' is given twice", nameof(tensors));
            if (tensor.Shape.Any(size => size < 0))
                throw new ArgumentException($"tensor '{tensor.Name}' has a negative dimension [{string.Join(",", tensor.Shape)}]", nameof(tensors));
        }
    }

    /// <summary>The JSON header of <paramref name="ordered"/>, padded with spaces so that 8 + its length is a multiple of <see cref="Alignment"/>.</summary>
    private static byte[] Header(IReadOnlyList<SafetensorsTensor> ordered, IReadOnlyDictionary<string, string> metadata)
    {
        var json = new ArrayBufferWriter<byte>();
        // Names and metadata as they are (no \u002B for '+'): the file is not HTML, and JSON escaping of quotes,
        // backslashes and control characters still applies.
        using (var writer = new Utf8JsonWriter(json, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            writer.WriteStartObject();
            if (metadata.Count > 0)
            {
                writer.WriteStartObject(MetadataKey);
                foreach (var (key, value) in metadata)
                    writer.WriteString(key, value);
                writer.WriteEndObject();
            }
            long offset = 0;
            foreach (var tensor in ordered)
            {
                writer.WriteStartObject(tensor.Name);
                writer.WriteString("dtype", tensor.Dtype.Name);
                writer.WriteStartArray("shape");
                foreach (var size in tensor.Shape)
                    writer.WriteNumberValue(size);
                writer.WriteEndArray();
                writer.WriteStartArray("data_offsets");
                writer.WriteNumberValue(offset);
                offset += tensor.Bytes;
                writer.WriteNumberValue(offset);
                writer.WriteEndArray();
                writer.WriteEndObject();
            }
            writer.WriteEndObject();
        }
        var padded = (sizeof(ulong) + json.WrittenCount + Alignment - 1) / Alignment * Alignment - sizeof(ulong);
        if (padded > MaxHeaderBytes)
            throw new InvalidOperationException($"the safetensors header would be {padded} bytes; readers refuse more than {MaxHeaderBytes}");
        var header = new byte[padded];
        json.WrittenSpan.CopyTo(header);
        header.AsSpan(json.WrittenCount).Fill((byte)' ');
        return header;
    }

    /// <summary>Copies the tensor's bytes from its source to <paramref name="output"/>; returns how many.</summary>
    private static long Copy(SafetensorsTensor tensor, Stream output, byte[] buffer)
    {
        tensor.Source.Seek(tensor.Offset, SeekOrigin.Begin);
        var bytes = tensor.Bytes;
        for (var left = bytes; left > 0;)
        {
            var read = tensor.Source.Read(buffer, 0, (int)Math.Min(buffer.Length, left));
            if (read == 0)
                throw new EndOfStreamException($"tensor '{tensor.Name}': its source ends {left} of its {bytes} bytes early");
            output.Write(buffer, 0, read);
            left -= read;
        }
        return bytes;
    }
}
