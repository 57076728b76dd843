using System.Text;
using Pretrain.Data.Shards;
using Pretrain.Shared.Recipes;
using Pretrain.Tests.Training;
using Pretrain.Worker.Training.Checkpoints;
using Xunit;
using static Pretrain.Tests.Fuzz.Mutations;
using static TorchSharp.torch;

namespace Pretrain.Tests.Fuzz;

/// <summary>
/// Mutated inputs for the readers of what users and disks hand us (issue 14, item 5, begun): the recipe loader,
/// shard headers, shard indexes and checkpoint tensor files. 10,000 inputs each, made by a seeded mutator from
/// a valid file (bytes flipped, set to edge values, inserted, deleted, duplicated, truncated), so a failure
/// replays: every input is either accepted or refused with the reader's own error type naming the file —
/// never another exception, never a hang. PRETRAIN_FUZZ_COUNT raises the count (`./test.sh --long` style runs).
/// The mutator and the loop are <see cref="Mutations"/>'s.
/// </summary>
public sealed class ReaderFuzzTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("pretrain-fuzz-").FullName;

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
