using System.Buffers.Binary;
using System.Text;
using Xunit;

namespace Pretrain.Tests.Export;

/// <summary>
/// The spec reader against files built by hand from the specification: it reads a valid one value for value and
/// refuses each kind of broken one, so a round trip through it (<see cref="ExportTests"/>) cannot pass vacuously.
/// </summary>
public sealed class SafetensorsReaderTests
{
    /// <summary>a: F32 [2] = (1.5, −2) at [0, 8); b: I64 [1] = 7 at [8, 16); header padded with spaces to 8-byte alignment.</summary>
    private const string ValidHeader =
        """{"__metadata__":{"format":"pt"},"b":{"dtype":"I64","shape":[1],"data_offsets":[8,16]},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""";

    private static byte[] ValidFile()
    {
        var file = FileOf(ValidHeader.PadRight((ValidHeader.Length + 7) / 8 * 8), 16);
        var data = file.AsSpan(file.Length - 16);
        BinaryPrimitives.WriteSingleLittleEndian(data, 1.5f);
        BinaryPrimitives.WriteSingleLittleEndian(data[4..], -2f);
        BinaryPrimitives.WriteInt64LittleEndian(data[8..], 7);
        return file;
    }

    [Fact]
    public void A_file_built_by_hand_from_the_specification_reads_back_value_for_value()
    {
        var file = SafetensorsReader.Parse(ValidFile(), "valid");
        Assert.Equal("pt", file.Metadata["format"]);
        Assert.Equal(["a", "b"], file.Tensors.Select(t => t.Name));                     // in data order
        Assert.Equal("F32", file["a"].Dtype);
        Assert.Equal([2L], file["a"].Shape);
        Assert.Equal(1.5f, BinaryPrimitives.ReadSingleLittleEndian(file["a"].Data));
        Assert.Equal(-2f, BinaryPrimitives.ReadSingleLittleEndian(file["a"].Data.AsSpan(4)));
        Assert.Equal(7L, BinaryPrimitives.ReadInt64LittleEndian(file["b"].Data));
    }

    [Theory]
    [InlineData(1, "not within the 15-byte buffer")]    // the last byte of b is gone
    [InlineData(16, "not within the 0-byte buffer")]    // all the data is gone
    [InlineData(21, "runs past the end of the file")]   // and the end of the header
    public void A_truncated_file_is_refused(int missingBytes, string expected)
    {
        var whole = ValidFile();
        var e = Assert.Throws<InvalidDataException>(() => SafetensorsReader.Parse(whole[..^missingBytes], "truncated"));
        Assert.StartsWith("truncated: ", e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void A_file_shorter_than_the_8_byte_header_length_is_refused()
    {
        var e = Assert.Throws<InvalidDataException>(() => SafetensorsReader.Parse([1, 0, 0], "tiny"));
        Assert.Contains("fewer than the 8", e.Message);
    }

    [Fact]
    public void Overlapping_offsets_are_refused()
    {
        const string header = """{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}""";
        var e = Assert.Throws<InvalidDataException>(() => SafetensorsReader.Parse(FileOf(header, 12), "overlap"));
        Assert.Contains("overlaps", e.Message);
    }

    [Theory]
    [InlineData("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[12,16]}}""", 16, "belong to no tensor")]
    [InlineData("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""", 12, "cover 8 of the buffer's 12")]
    [InlineData("""{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}""", 8, "needs 12")]
    [InlineData("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,16]}}""", 8, "not within")]
    [InlineData("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}""", 8, "not within")]
    [InlineData("""{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}""", 8, "non-negative")]
    [InlineData("""{"a":{"dtype":"F31","shape":[2],"data_offsets":[0,8]}}""", 8, "not one of")]
    [InlineData("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"extra":1}}""", 8, "expected exactly")]
    [InlineData("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""", 8, "appears twice")]
    [InlineData("""{"__metadata__":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""", 8, "not a string")]
    [InlineData("""{"__metadata__":{"k":"v"},"__metadata__":{"k":"v"}}""", 0, "appears twice")]
    [InlineData("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}""", 8, "not JSON")]
    [InlineData("""["a"]""", 0, "not begin with '{'")]
    public void A_header_that_breaks_a_rule_of_the_specification_is_refused_saying_which(string header, int bufferBytes, string expected)
    {
        var e = Assert.Throws<InvalidDataException>(() => SafetensorsReader.Parse(FileOf(header, bufferBytes), "broken"));
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void A_header_length_over_100_MB_is_refused_before_anything_is_read()
    {
        var file = new byte[16];
        BinaryPrimitives.WriteUInt64LittleEndian(file, 200_000_000);
        var e = Assert.Throws<InvalidDataException>(() => SafetensorsReader.Parse(file, "huge"));
        Assert.Contains("exceeds", e.Message);
    }

    /// <summary>8 bytes little-endian header length, the header, then <paramref name="bufferBytes"/> zero bytes.</summary>
    private static byte[] FileOf(string header, int bufferBytes)
    {
        var json = Encoding.UTF8.GetBytes(header);
        var file = new byte[8 + json.Length + bufferBytes];
        BinaryPrimitives.WriteUInt64LittleEndian(file, (ulong)json.Length);
        json.CopyTo(file, 8);
        return file;
    }
}
