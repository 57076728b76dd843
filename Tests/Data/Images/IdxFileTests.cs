using System.Buffers.Binary;
using System.IO.Compression;
using Pretrain.Data.Images;
using Pretrain.Data.Preparation;
using Pretrain.Tests.Training;
using Xunit;

namespace Pretrain.Tests.Data.Images;

public class IdxFileTests
{
    private readonly string directory = TestRecipes.TemporaryDirectory();

    private static byte[] Idx(uint magic, params int[] dims)
    {
        var header = new byte[4 + 4 * dims.Length];
        BinaryPrimitives.WriteUInt32BigEndian(header, magic);
        for (var i = 0; i < dims.Length; i++)
            BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(4 + 4 * i), (uint)dims[i]);
        return header;
    }

    private string Write(string name, byte[] bytes, bool gzip = false)
    {
        var path = Path.Combine(directory, name);
        if (!gzip)
            File.WriteAllBytes(path, bytes);
        else
            using (var stream = new GZipStream(File.Create(path), CompressionLevel.Fastest))
                stream.Write(bytes);
        return path;
    }

    [Fact]
    public void Plain_and_gzipped_files_read_the_same()
    {
        byte[] data = [.. Idx(0x803, 2, 2, 3), .. Enumerable.Range(0, 12).Select(i => (byte)i)];
        var plain = IdxFile.ReadImages(Write("plain", data));
        var gzipped = IdxFile.ReadImages(Write("gzipped.gz", data, gzip: true));
        Assert.Equal((2, 2, 3), (plain.Count, plain.Rows, plain.Columns));
        Assert.Equal(plain.Pixels, gzipped.Pixels);
    }

    [Fact]
    public void A_wrong_magic_names_the_file_offset_and_expected_magic()
    {
        var path = Write("labels-as-images", [.. Idx(0x801, 3), 1, 2, 3]);
        var error = Assert.Throws<InvalidDataException>(() => IdxFile.ReadImages(path));
        Assert.Contains($"{path}: offset 0: expected idx magic 0x00000803", error.Message);
    }

    [Fact]
    public void A_count_larger_than_the_file_names_the_file_offset_and_expected_size()
    {
        var path = Write("short.gz", [.. Idx(0x803, 100, 28, 28), .. new byte[784 * 3]], gzip: true);
        var error = Assert.Throws<InvalidDataException>(() => IdxFile.ReadImages(path));
        Assert.Contains($"{path}: offset 16: expected 100 images of 28x28 bytes = 78400 bytes of data, found 2352", error.Message);
    }

    [Fact]
    public void A_truncated_gzip_stream_names_the_file()
    {
        var path = Write("cut.gz", [.. Idx(0x803, 100, 28, 28), .. Enumerable.Range(0, 78400).Select(i => (byte)(i * 31))], gzip: true);
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..(bytes.Length / 2)]);
        var error = Assert.ThrowsAny<Exception>(() => IdxFile.ReadImages(path));
        Assert.Contains(path, error.Message);
    }

    [Fact]
    public void A_bad_input_file_fails_the_plan_and_leaves_existing_output_alone()
    {
        var output = TestRecipes.TemporaryDirectory();
        var existing = Path.Combine(output, "train-00000.shard");
        File.WriteAllText(existing, "an earlier run's shard");
        Write("train-images-idx3-ubyte", [.. Idx(0x803, 5, 2, 2), .. new byte[20]]);
        Write("train-labels-idx1-ubyte", [.. Idx(0x801, 5), 0, 1, 2, 3, 4]);
        Write("t10k-images-idx3-ubyte", [.. Idx(0x803, 9, 2, 2), .. new byte[8]]); // says 9 images, holds 2
        Write("t10k-labels-idx1-ubyte", [.. Idx(0x801, 2), 0, 1]);
        var error = Assert.Throws<InvalidDataException>(() => PreparationPlans.Create(new PrepareSpec("fashion-mnist", [directory], output)));
        Assert.Contains("t10k-images-idx3-ubyte: offset 16", error.Message);
        Assert.Equal("an earlier run's shard", File.ReadAllText(existing));
        Assert.Single(Directory.GetFiles(output));
    }
}
