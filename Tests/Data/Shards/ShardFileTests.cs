using Pretrain.Data.Shards;
using Pretrain.Tests.Training;
using Xunit;

namespace Pretrain.Tests.Data.Shards;

public class ShardFileTests
{
    private readonly string directory = TestRecipes.TemporaryDirectory();

    // Documents of 0-40 tokens with ids up to 60,000, so uint16 is exercised beyond one byte.
    private static int[][] Documents(int count) =>
        Enumerable.Range(0, count).Select(d => Enumerable.Range(0, d % 41).Select(t => (d * 7919 + t * 104729) % 60_000).ToArray()).ToArray();

    private string WriteTokens(int[][] documents, string name = "tokens.shard")
    {
        var path = Path.Combine(directory, name);
        using var writer = new ShardWriter(path, ShardLayout.Tokens(ShardDType.UInt16));
        foreach (var document in documents)
            writer.Append<ushort>(document.Select(t => (ushort)t).ToArray());
        writer.Complete();
        return path;
    }

    private string WriteImages(int count, string name = "images.shard")
    {
        var path = Path.Combine(directory, name);
        using var writer = new ShardWriter(path, ShardLayout.Images(1, 4, 3, hasLabels: true));
        for (var i = 0; i < count; i++)
            writer.Append<byte>(Enumerable.Range(0, 12).Select(p => (byte)(i * 13 + p)).ToArray(), label: i % 10);
        writer.Complete();
        return path;
    }

    [Fact]
    public void Token_records_round_trip_in_any_order()
    {
        var documents = Documents(200);
        using var reader = ShardReader.Open(WriteTokens(documents));
        Assert.Equal(200, reader.Count);
        Assert.Equal(ShardKind.Tokens, reader.Layout.Kind);
        foreach (var id in new[] { 199, 0, 41, 40, 123, 1 })
            Assert.Equal(documents[id].Select(t => (ushort)t).ToArray(), reader.Record<ushort>(id).ToArray());
        Assert.Empty(reader.Record<ushort>(0).ToArray()); // document 0 has no tokens: empty records are kept
        Assert.Throws<ArgumentOutOfRangeException>(() => reader.Record<ushort>(200));
        Assert.Throws<ArgumentException>(() => reader.Record<int>(3)); // uint16 shard read as int32
    }

    [Fact]
    public void Image_records_and_labels_round_trip()
    {
        using var reader = ShardReader.Open(WriteImages(50));
        Assert.Equal([1, 4, 3], reader.Layout.Shape);
        Assert.Equal(50, reader.Count);
        Assert.Equal(Enumerable.Range(0, 12).Select(p => (byte)(37 * 13 + p)).ToArray(), reader.Record<byte>(37).ToArray());
        Assert.Equal(7, reader.Label(37));
        Assert.Equal(Enumerable.Range(0, 50).Select(i => i % 10), reader.Labels.ToArray());
    }

    [Fact]
    public void A_flipped_byte_fails_with_the_file_name_and_checksum_mismatch()
    {
        var path = WriteImages(20);
        var bytes = File.ReadAllBytes(path);
        bytes[ShardFormat.HeaderBytes + 100] ^= 0x01; // one bit of one pixel
        File.WriteAllBytes(path, bytes);
        var error = Assert.Throws<InvalidDataException>(() => ShardReader.Open(path));
        Assert.Contains(path, error.Message);
        Assert.Contains("checksum mismatch", error.Message);
    }

    [Fact]
    public void A_flipped_header_byte_is_caught_too()
    {
        var path = WriteTokens(Documents(20));
        var bytes = File.ReadAllBytes(path);
        bytes[40] ^= 0x04; // record count 20 -> 16: still within bounds, so only the checksum can tell
        File.WriteAllBytes(path, bytes);
        var error = Assert.Throws<InvalidDataException>(() => ShardReader.Open(path));
        Assert.Contains("checksum mismatch", error.Message);
    }

    [Fact]
    public void A_truncated_file_names_the_file_and_the_expected_size()
    {
        var path = WriteImages(20);
        var full = new FileInfo(path).Length;
        using (var stream = new FileStream(path, FileMode.Open))
            stream.SetLength(full - 10);
        var error = Assert.Throws<InvalidDataException>(() => ShardReader.Open(path));
        Assert.Contains(path, error.Message);
        Assert.Contains($"header says {full} bytes", error.Message);

        File.WriteAllBytes(path, new byte[5]);
        error = Assert.Throws<InvalidDataException>(() => ShardReader.Open(path));
        Assert.Contains("96-byte header", error.Message);
    }

    [Fact]
    public void A_bad_magic_is_named()
    {
        var path = WriteImages(3);
        var bytes = File.ReadAllBytes(path);
        bytes[0] = (byte)'X';
        File.WriteAllBytes(path, bytes);
        var error = Assert.Throws<InvalidDataException>(() => ShardReader.Open(path));
        Assert.Contains(path, error.Message);
        Assert.Contains("expected magic", error.Message);
    }

    [Fact]
    public void A_writer_disposed_without_Complete_leaves_no_file()
    {
        var path = Path.Combine(directory, "abandoned.shard");
        using (var writer = new ShardWriter(path, ShardLayout.Tokens(ShardDType.Int32)))
            writer.Append<int>([1, 2, 3]);
        Assert.Empty(Directory.GetFiles(directory)); // neither the final name nor the temporary one
    }

    [Fact]
    public void Writing_the_same_records_twice_gives_identical_files()
    {
        var first = File.ReadAllBytes(WriteTokens(Documents(30), "a.shard"));
        var second = File.ReadAllBytes(WriteTokens(Documents(30), "b.shard"));
        Assert.Equal(first, second);
    }

    [Fact]
    public void Reading_records_allocates_nothing()
    {
        using var tokens = ShardReader.Open(WriteTokens(Documents(100)));
        using var images = ShardReader.Open(WriteImages(100));
        long sum = 0;
        for (var i = 0; i < 1000; i++) // warm up: tiering and first-call stubs allocate
            sum += tokens.Record<ushort>(i % 100).Length + images.Record<byte>(i % 100)[0] + images.Label(i % 100);
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 100_000; i++)
            sum += tokens.Record<ushort>(i * 31 % 100).Length + images.Record<byte>(i * 17 % 100)[0] + images.Label(i % 100);
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(sum > 0);
        Assert.Equal(0, allocated);
    }
}
