using System.Text;
using Pretrain.Data.Shards;
using Pretrain.Shared.Recipes;
using Pretrain.Tests.Training;
using Pretrain.Worker.Training.Checkpoints;
using Xunit;
using static TorchSharp.torch;

namespace Pretrain.Tests.Fuzz;

/// <summary>
/// Mutated inputs for the readers of what users and disks hand us (issue 14, item 5, begun): the recipe loader,
/// shard headers, shard indexes and checkpoint tensor files. 10,000 inputs each, made by a seeded mutator from
/// a valid file (bytes flipped, set to edge values, inserted, deleted, duplicated, truncated), so a failure
/// replays: every input is either accepted or refused with the reader's own error type naming the file —
/// never another exception, never a hang. PRETRAIN_FUZZ_COUNT raises the count (`./test.sh --long` style runs).
/// </summary>
public sealed class ReaderFuzzTests : IDisposable
{
    static readonly int Count = int.TryParse(Environment.GetEnvironmentVariable("PRETRAIN_FUZZ_COUNT"), out var n) && n > 0 ? n : 10_000;
    readonly string _dir = Directory.CreateTempSubdirectory("pretrain-fuzz-").FullName;

    /// <summary>A mutation of <paramref name="input"/>: one to four edits chosen by <paramref name="random"/>.</summary>
    static byte[] Mutate(byte[] input, Random random, ReadOnlySpan<byte> dictionary)
    {
        var bytes = new List<byte>(input);
        for (var edits = random.Next(1, 5); edits > 0; edits--)
        {
            var at = bytes.Count == 0 ? 0 : random.Next(bytes.Count);
            switch (random.Next(7))
            {
                case 0 when bytes.Count > 0: bytes[at] ^= (byte)(1 << random.Next(8)); break;                  // a bit flip
                case 1 when bytes.Count > 0: bytes[at] = new byte[] { 0, 0xFF, 0x7F, 0x80, 1 }[random.Next(5)]; break;  // an edge value
                case 2: bytes.Insert(at, dictionary[random.Next(dictionary.Length)]); break;                  // a significant byte
                case 3 when bytes.Count > 0: bytes.RemoveRange(at, Math.Min(bytes.Count - at, random.Next(1, 16))); break;
                case 4 when bytes.Count > 0:                                                                   // a run duplicated
                    var run = bytes.GetRange(at, Math.Min(bytes.Count - at, random.Next(1, 64)));
                    bytes.InsertRange(random.Next(bytes.Count), run);
                    break;
                case 5: bytes.RemoveRange(at, bytes.Count - at); break;                                        // truncated
                default:
                    if (bytes.Count >= 8)                                                                      // an 8-byte field made huge or negative
                    {
                        var field = random.Next(bytes.Count - 7);
                        var value = new[] { long.MaxValue, long.MinValue, -1L, int.MaxValue + 1L, 1L << 40 }[random.Next(5)];
                        for (var k = 0; k < 8; k++) bytes[field + k] = BitConverter.GetBytes(value)[k];
                    }
                    break;
            }
        }
        return [.. bytes];
    }

    /// <summary>Runs <paramref name="read"/> on <see cref="Count"/> mutations; only <typeparamref name="TError"/> may escape.</summary>
    static void Fuzz<TError>(byte[] valid, string dictionary, int seed, Action<byte[]> read) where TError : Exception
    {
        read(valid);                                                                  // the seed input is accepted
        var random = new Random(seed);
        int refused = 0;
        for (var i = 0; i < Count; i++)
        {
            var input = Mutate(valid, random, Encoding.ASCII.GetBytes(dictionary));
            try { read(input); }
            catch (TError) { refused++; }
            catch (Exception e)
            {
                throw new Xunit.Sdk.XunitException($"input {i} of seed {seed} ({input.Length} bytes) escaped as {e.GetType().Name}: {e.Message}\n" +
                                                   Convert.ToBase64String(input));
            }
        }
        Assert.True(refused > Count / 10, $"only {refused} of {Count} mutations were refused: the mutator is not reaching the checks");
    }

    [Fact]
    public void The_recipe_loader_refuses_every_broken_recipe_with_a_recipe_error()
    {
        var file = TestRecipes.TinyRecipePath;
        Fuzz<RecipeException>(File.ReadAllBytes(file), ":-[]{},#&*!|>'\"%@`\n \t0123456789.e", seed: 14_001,
            bytes => RecipeLoader.Parse(Encoding.UTF8.GetString(bytes), file));
    }

    [Fact]
    public void Shard_headers_are_refused_with_a_data_error_and_an_accepted_one_fits_its_file()
    {
        var layout = new ShardLayout(ShardKind.Tokens, ShardDType.UInt16, [], false);
        var header = new byte[ShardFormat.HeaderBytes];
        const long records = 3, dataBytes = 6, indexOffset = ShardFormat.HeaderBytes + 8, fileBytes = indexOffset + (records + 1) * 8;
        ShardFormat.Write(header, new ShardHeader(layout, records, indexOffset, 0, ShardFormat.HeaderBytes, dataBytes, fileBytes, 0));
        Fuzz<InvalidDataException>(header, "\0\x01\x02\x03\xFF", seed: 14_002, bytes =>
        {
            var length = bytes.Length < ShardFormat.HeaderBytes ? bytes.Length : fileBytes;
            var padded = new byte[Math.Max(bytes.Length, ShardFormat.HeaderBytes)];
            bytes.CopyTo(padded, 0);
            var h = ShardFormat.Read("fuzz.shard", padded, length);
            // Accepted: every section lies inside the file, computed without overflow.
            Assert.True((decimal)h.DataOffset + h.DataBytes <= h.FileBytes && h.RecordCount >= 0, $"accepted a header whose data leaves the file: {h}");
            if (h.IndexOffset != 0) Assert.True((decimal)h.IndexOffset + ((decimal)h.RecordCount + 1) * 8 <= h.FileBytes, $"accepted an index outside the file: {h}");
            if (h.Layout.HasLabels) Assert.True((decimal)h.LabelsOffset + (decimal)h.RecordCount * 4 <= h.FileBytes, $"accepted labels outside the file: {h}");
        });
    }

    [Fact]
    public void A_shard_index_is_refused_with_a_data_error_naming_the_file()
    {
        var valid = """
            {
              "version": 1,
              "kind": "tokens",
              "dType": "uint16",
              "splits": {
                "train": { "samples": 5, "shards": [ { "file": "train-00000.shard", "records": 5, "bytes": 4096, "checksum": "0123456789abcdef" } ] },
                "validation": { "samples": 0, "shards": [] }
              }
            }
            """;
        var directory = Directory.CreateDirectory(Path.Combine(_dir, "index")).FullName;
        var path = Path.Combine(directory, ShardIndex.FileName);
        Fuzz<InvalidDataException>(Encoding.UTF8.GetBytes(valid), "{}[]:,\"0123456789-.etrufalsn", seed: 14_003, bytes =>
        {
            File.WriteAllBytes(path, bytes);
            try { ShardIndex.Load(directory); }
            catch (InvalidDataException e) when (e.Message.StartsWith(path, StringComparison.Ordinal)) { throw; }
            catch (InvalidDataException e) { throw new InvalidOperationException($"the error does not name {path}: {e.Message}"); }
        });
    }

    [Fact]
    public void A_checkpoint_tensor_file_is_refused_with_a_data_error_whatever_its_bytes()
    {
        using var weight = ones(3, 4);
        using var bias = zeros(4);
        var path = Path.Combine(_dir, "model.tensors");
        TensorFile.Write(path, [("weight", weight), ("bias", bias)]);
        var valid = File.ReadAllBytes(path);
        var targets = new Dictionary<string, Tensor> { ["weight"] = weight, ["bias"] = bias };
        Fuzz<InvalidDataException>(valid, "\0\x01\x02\x03\x06\x08\xFF", seed: 14_004, bytes =>
        {
            File.WriteAllBytes(path, bytes);
            TensorFile.Read(path, targets);
        });
    }

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }
}
