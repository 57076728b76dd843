using System.Buffers.Binary;
using System.Text;
using System.Text.Json;

namespace Pretrain.Tests.Export;

/// <summary>One tensor as read from a safetensors file: its header entry and its bytes.</summary>
public sealed record SafetensorsEntry(string Name, string Dtype, long[] Shape, long Begin, long End, byte[] Data);

/// <summary>A safetensors file as read: the header's length, its metadata and its tensors in data order.</summary>
public sealed record SafetensorsContent(ulong HeaderLength, IReadOnlyDictionary<string, string> Metadata, IReadOnlyList<SafetensorsEntry> Tensors)
{
    public SafetensorsEntry this[string name] => Tensors.Single(t => t.Name == name);
}

/// <summary>
/// A strict safetensors reader written from the format's specification alone — it shares no code with
/// <c>Worker/Export/SafetensorsWriter</c>, so a round trip through both checks the writer against the format and not
/// against itself. Layout: 8 bytes little-endian uint64 N, then N bytes of UTF-8 JSON beginning with '{' (trailing
/// spaces allowed), then the byte buffer. Every rule of the specification is enforced and a violation throws
/// <see cref="InvalidDataException"/> saying which: N at most 100 MB and within the file; valid JSON of an object;
/// no name twice; <c>__metadata__</c> only as an object of strings; each tensor exactly dtype, shape and
/// data_offsets, with a known dtype, non-negative dimensions, 0 ≤ begin ≤ end ≤ buffer length and
/// end − begin = product(shape) × dtype size; and the tensors' ranges covering the buffer without hole or overlap.
/// </summary>
public static class SafetensorsReader
{
    public const ulong MaxHeaderBytes = 100_000_000;
    private const string MetadataKey = "__metadata__";

    /// <summary>Bytes per element of every dtype the specification names.</summary>
    private static readonly IReadOnlyDictionary<string, int> DtypeSizes = new Dictionary<string, int>(StringComparer.Ordinal)
    {
        ["BOOL"] = 1, ["U8"] = 1, ["I8"] = 1, ["F8_E5M2"] = 1, ["F8_E4M3"] = 1,
        ["I16"] = 2, ["U16"] = 2, ["F16"] = 2, ["BF16"] = 2,
        ["I32"] = 4, ["U32"] = 4, ["F32"] = 4,
        ["I64"] = 8, ["U64"] = 8, ["F64"] = 8,
    };

    public static SafetensorsContent Read(string path) => Parse(File.ReadAllBytes(path), path);

    /// <summary>Reads the safetensors bytes <paramref name="file"/>; <paramref name="name"/> names it in errors.</summary>
    public static SafetensorsContent Parse(byte[] file, string name)
    {
        InvalidDataException Bad(string problem) => new($"{name}: not a valid safetensors file: {problem}");

        if (file.Length < 8)
            throw Bad($"{file.Length} bytes, fewer than the 8 of the header length");
        var headerLength = BinaryPrimitives.ReadUInt64LittleEndian(file);
        if (headerLength > MaxHeaderBytes)
            throw Bad($"header length {headerLength} exceeds {MaxHeaderBytes}");
        if (headerLength > (ulong)(file.Length - 8))
            throw Bad($"header length {headerLength} runs past the end of the file ({file.Length - 8} bytes follow the length)");
        var header = file.AsSpan(8, (int)headerLength);
        if (header.Length == 0 || header[0] != (byte)'{')
            throw Bad("the header does not begin with '{'");
        var json = header.TrimEnd((byte)' ');
        string text;
        try
        {
            text = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true).GetString(json);
        }
        catch (DecoderFallbackException e)
        {
            throw Bad($"the header is not UTF-8 ({e.Message})");
        }
        var bufferStart = 8 + (long)headerLength;
        var bufferLength = file.Length - bufferStart;

        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(text);
        }
        catch (JsonException e)
        {
            throw Bad($"the header is not JSON ({e.Message})");
        }
        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object)
                throw Bad($"the header is a JSON {document.RootElement.ValueKind}, not an object");
            var names = new HashSet<string>(StringComparer.Ordinal);
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            var tensors = new List<SafetensorsEntry>();
            foreach (var property in document.RootElement.EnumerateObject())
            {
                if (!names.Add(property.Name))
                    throw Bad($"'{property.Name}' appears twice in the header");
                if (property.Name == MetadataKey)
                    ReadMetadata(property.Value, metadata, Bad);
                else
                    tensors.Add(ReadTensor(property.Name, property.Value, file, bufferStart, bufferLength, Bad));
            }
            CheckCoverage(tensors, bufferLength, Bad);
            return new SafetensorsContent(headerLength, metadata, [.. tensors.OrderBy(t => t.Begin).ThenBy(t => t.End)]);
        }
    }

    private static void ReadMetadata(JsonElement value, Dictionary<string, string> metadata, Func<string, InvalidDataException> bad)
    {
        if (value.ValueKind != JsonValueKind.Object)
            throw bad($"{MetadataKey} is a JSON {value.ValueKind}, not an object");
        foreach (var pair in value.EnumerateObject())
        {
            if (pair.Value.ValueKind != JsonValueKind.String)
                throw bad($"{MetadataKey}.{pair.Name} is a JSON {pair.Value.ValueKind}, not a string");
            if (!metadata.TryAdd(pair.Name, pair.Value.GetString()!))
                throw bad($"{MetadataKey}.{pair.Name} appears twice");
        }
    }

    private static SafetensorsEntry ReadTensor(string name, JsonElement value, byte[] file, long bufferStart, long bufferLength,
        Func<string, InvalidDataException> bad)
    {
        if (value.ValueKind != JsonValueKind.Object)
            throw bad($"tensor '{name}' is a JSON {value.ValueKind}, not an object");
        var keys = value.EnumerateObject().Select(p => p.Name).ToList();
        if (keys.Count != 3 || !keys.Contains("dtype") || !keys.Contains("shape") || !keys.Contains("data_offsets"))
            throw bad($"tensor '{name}' has keys [{string.Join(", ", keys)}], expected exactly dtype, shape and data_offsets");

        var dtypeElement = value.GetProperty("dtype");
        var dtype = dtypeElement.ValueKind == JsonValueKind.String ? dtypeElement.GetString()! : "";
        if (!DtypeSizes.TryGetValue(dtype, out var size))
            throw bad($"tensor '{name}' has dtype {dtypeElement}, not one of {string.Join(", ", DtypeSizes.Keys)}");
        var shape = Integers(value.GetProperty("shape"), $"tensor '{name}' shape", bad);
        var offsets = Integers(value.GetProperty("data_offsets"), $"tensor '{name}' data_offsets", bad);
        if (offsets.Length != 2)
            throw bad($"tensor '{name}' has {offsets.Length} data_offsets, expected [begin, end]");
        var (begin, end) = (offsets[0], offsets[1]);
        if (begin > end || end > bufferLength)
            throw bad($"tensor '{name}' data_offsets [{begin}, {end}] are not within the {bufferLength}-byte buffer");

        long expected;
        try
        {
            expected = checked(shape.Aggregate(1L, (product, dimension) => checked(product * dimension)) * size);
        }
        catch (OverflowException)
        {
            throw bad($"tensor '{name}' shape [{string.Join(",", shape)}] overflows");
        }
        if (end - begin != expected)
            throw bad($"tensor '{name}' spans {end - begin} bytes but {dtype}[{string.Join(",", shape)}] needs {expected}");
        return new SafetensorsEntry(name, dtype, shape, begin, end, file.AsSpan((int)(bufferStart + begin), (int)(end - begin)).ToArray());
    }

    /// <summary>A JSON array of non-negative integers.</summary>
    private static long[] Integers(JsonElement array, string what, Func<string, InvalidDataException> bad)
    {
        if (array.ValueKind != JsonValueKind.Array)
            throw bad($"{what} is a JSON {array.ValueKind}, not an array");
        return [.. array.EnumerateArray().Select(item =>
            item.ValueKind == JsonValueKind.Number && item.TryGetInt64(out var n) && n >= 0 ? n
                : throw bad($"{what} holds {item}, not a non-negative integer"))];
    }

    /// <summary>The tensors' [begin, end) ranges, in order, tile [0, buffer length): no hole, no overlap, nothing left over.</summary>
    private static void CheckCoverage(List<SafetensorsEntry> tensors, long bufferLength, Func<string, InvalidDataException> bad)
    {
        long covered = 0;
        foreach (var tensor in tensors.OrderBy(t => t.Begin).ThenBy(t => t.End))
        {
            if (tensor.Begin < covered)
                throw bad($"tensor '{tensor.Name}' [{tensor.Begin}, {tensor.End}] overlaps the bytes before {covered}");
            if (tensor.Begin > covered)
                throw bad($"bytes [{covered}, {tensor.Begin}) of the buffer belong to no tensor");
            covered = tensor.End;
        }
        if (covered != bufferLength)
            throw bad($"the tensors cover {covered} of the buffer's {bufferLength} bytes");
    }
}
