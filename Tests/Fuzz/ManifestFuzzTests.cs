using System.Globalization;
using System.IO.Hashing;
using System.Text;
using System.Text.Json;
using Pretrain.Shared.Recipes;
using Pretrain.Tests.Training;
using Pretrain.Worker.Training.Checkpoints;
using Xunit;
using static Pretrain.Tests.Fuzz.Mutations;
using static TorchSharp.torch;

namespace Pretrain.Tests.Fuzz;

/// <summary>
/// Mutated <c>manifest.json</c> and <c>training_state.json</c> for the checkpoint reader (issue 14, item 5), 10,000 each,
/// in a checkpoint <see cref="CheckpointStore.Write"/> made. Each input either opens or is refused with an
/// <see cref="InvalidDataException"/> naming the checkpoint, and <see cref="CheckpointStore.FindNewest"/> skips exactly
/// what <see cref="CheckpointStore.Open"/> refuses. No manifest makes the reader open a file outside its checkpoint.
/// </summary>
public sealed class ManifestFuzzTests : IDisposable
{
    const string JsonSyntax = "{}[]:,\"0123456789-.eE+truefalsnullNaN/\\";

    readonly string _run = Directory.CreateTempSubdirectory("pretrain-fuzz-").FullName;
    readonly string _checkpoint;                   // RUN/checkpoints/step-00000008
    readonly string _manifestPath;

    public ManifestFuzzTests()
    {
        using var weight = ones(3, 4);
        using var moment = zeros(3, 4);
        var recipe = RecipeLoader.Parse(File.ReadAllText(TestRecipes.TinyRecipePath), TestRecipes.TinyRecipePath);
        var state = new TrainingState(Step: 8, Epoch: 0, OptimizerStep: 8, LearningRate: 3e-4, Seed: 1234, Loss: 2.75,
            SampleDigest: "0123456789abcdef", FirstLoss: 4.5, SamplesPerSecond: 512);
        var content = new CheckpointContent(state, [("weight", weight)], [("m.weight", moment)], recipe, WorldSize: 2);
        _checkpoint = new CheckpointStore(_run, _ => { }).Write(content, keep: 1);
        _manifestPath = Path.Combine(_checkpoint, CheckpointManifest.FileName);
    }

    public void Dispose()
    {
        try { Directory.Delete(_run, recursive: true); } catch (IOException) { }
    }

    [Fact]
    public void A_mutated_manifest_opens_or_is_refused_with_a_data_error_naming_the_checkpoint()
    {
        Fuzz<InvalidDataException>(File.ReadAllBytes(_manifestPath), JsonSyntax, seed: 14_007, bytes =>
        {
            File.WriteAllBytes(_manifestPath, bytes);
            OpenOrRefuse();
        });
    }

    [Fact]
    public void A_mutated_training_state_its_manifest_vouches_for_opens_or_is_refused_naming_the_file()
    {
        // The manifest states each mutation's true size and checksum, so the reader gets past them to the JSON:
        // a state written broken, not one damaged on disk.
        var statePath = Path.Combine(_checkpoint, CheckpointStore.StateFile);
        var manifest = ReadManifest();
        Fuzz<InvalidDataException>(File.ReadAllBytes(statePath), JsonSyntax, seed: 14_008, bytes =>
        {
            File.WriteAllBytes(statePath, bytes);
            WriteManifest(manifest with { Files = [.. manifest.Files.Select(f => f.Name == CheckpointStore.StateFile ? Describe(f.Name, bytes) : f)] });
            OpenOrRefuse();
        });
    }

    [Fact]
    public void A_manifest_naming_a_file_outside_its_checkpoint_is_refused_even_when_the_file_matches()
    {
        // A file beside the run whose size and checksum the manifest states truly: only its place is wrong.
        var outside = Path.Combine(_run, "outside.bin");
        File.WriteAllBytes(outside, Encoding.ASCII.GetBytes("not part of any checkpoint"));
        var manifest = ReadManifest();
        foreach (var name in new[] { "../../outside.bin", outside, "sub/../../../outside.bin", "..", "" })
        {
            WriteManifest(manifest with { Files = [.. manifest.Files, Describe(name, File.ReadAllBytes(outside))] });
            var error = Assert.Throws<InvalidDataException>(() => CheckpointStore.Open(_checkpoint));
            Assert.Equal($"{_manifestPath}: file name '{name}' is not a file of the checkpoint directory", error.Message);
            Assert.Null(new CheckpointStore(_run, _ => { }).FindNewest(recipeHash: null));
        }
    }

    [Fact]
    public void A_manifest_that_leaves_out_a_file_the_loaders_read_is_refused()
    {
        var manifest = ReadManifest();
        WriteManifest(manifest with { Files = [.. manifest.Files.Where(f => f.Name != CheckpointStore.StateFile)] });
        var error = Assert.Throws<InvalidDataException>(() => CheckpointStore.Open(_checkpoint));
        Assert.Equal($"{_manifestPath}: {CheckpointStore.StateFile} is not listed", error.Message);
    }

    /// <summary>Opens the checkpoint: refused naming it (and then skipped by FindNewest too), or opened with every file inside it.</summary>
    void OpenOrRefuse()
    {
        var found = new CheckpointStore(_run, _ => { }).FindNewest(recipeHash: null);
        VerifiedCheckpoint opened;
        try
        {
            opened = CheckpointStore.Open(_checkpoint);
        }
        catch (InvalidDataException e) when (e.Message.Contains(_checkpoint, StringComparison.Ordinal))
        {
            Assert.Null(found);
            throw;
        }
        catch (InvalidDataException e)
        {
            throw new InvalidOperationException($"the error does not name {_checkpoint}: {e.Message}", e);
        }
        Assert.NotNull(found);
        Assert.All(opened.Manifest.Files, f => Assert.Equal(_checkpoint, Path.GetDirectoryName(Path.GetFullPath(Path.Combine(_checkpoint, f.Name)))));
        Assert.Equal(opened.Manifest.Step, opened.State.Step);
    }

    CheckpointManifest ReadManifest() =>
        JsonSerializer.Deserialize<CheckpointManifest>(File.ReadAllBytes(_manifestPath), CheckpointManifest.Json)
        ?? throw new InvalidOperationException($"{_manifestPath} holds null");

    void WriteManifest(CheckpointManifest manifest) =>
        File.WriteAllBytes(_manifestPath, JsonSerializer.SerializeToUtf8Bytes(manifest, CheckpointManifest.Json));

    /// <summary>The manifest's entry for <paramref name="bytes"/>, as the writer describes a file.</summary>
    static CheckpointFile Describe(string name, byte[] bytes) =>
        new(name, bytes.Length, XxHash64.HashToUInt64(bytes).ToString("x16", CultureInfo.InvariantCulture));
}
