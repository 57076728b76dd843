using Pretrain.Worker.Training.Checkpoints;
using Xunit;
using static TorchSharp.torch;

namespace Pretrain.Tests.Training;

public class CheckpointTests
{
    private static readonly Pretrain.Shared.Recipes.Recipe Recipe = TestRecipes.Tiny();

    [Fact]
    public async Task Resume_from_step_20_then_run_to_30_matches_an_uninterrupted_run_to_30()
    {
        var uninterrupted = await TrainerTests.Train(Recipe, TestRecipes.TemporaryDirectory());

        var run = TestRecipes.TemporaryDirectory();
        var first = await TrainerTests.Train(Recipe, run, maxSteps: 20);
        Assert.Equal(20, first.Result.Step);
        var log = new List<string>();
        var resumed = await TrainerTests.Train(Recipe, run, resume: true, log: log);

        Assert.Contains(log, l => l.Contains("resumed from") && l.Contains("step-00000020"));
        Assert.Equal(10, resumed.Steps.Count);
        Assert.Equal(uninterrupted.Result.ReplicaChecksum, resumed.Result.ReplicaChecksum);
        Assert.Equal(uninterrupted.Steps.Skip(20).Select(s => s.Loss), resumed.Steps.Select(s => s.Loss));
        Assert.Equal(uninterrupted.Result.Eval, resumed.Result.Eval);
    }

    [Fact]
    public async Task Run_writes_every_N_steps_keeps_the_newest_K_and_a_complete_manifest()
    {
        var run = TestRecipes.TemporaryDirectory();
        await TrainerTests.Train(TestRecipes.Tiny(t => TestRecipes.Set(TestRecipes.Set(t, "every", "5"), "keep", "2")), run);
        var names = Directory.GetDirectories(Path.Combine(run, "checkpoints")).Select(Path.GetFileName).Order();
        Assert.Equal(["step-00000025", "step-00000030"], names);
        var manifest = File.ReadAllText(Path.Combine(run, "checkpoints", "step-00000030", "manifest.json"));
        foreach (var field in new[] { "\"format_version\": 1", "\"step\": 30", "\"recipe_hash\"", "\"world_size\": 1", "model.tensors", "optimizer.tensors", "training_state.json", "recipe.yaml", "xxhash64" })
            Assert.Contains(field, manifest);
        var saved = File.ReadAllText(Path.Combine(run, "checkpoints", "step-00000030", CheckpointStore.RecipeFile));
        Assert.Contains("every: 5", saved); // the full recipe text travels with the checkpoint
    }

    [Fact]
    public async Task Leftover_tmp_directory_is_ignored()
    {
        var run = TestRecipes.TemporaryDirectory();
        await TrainerTests.Train(Recipe, run, maxSteps: 10);
        var leftover = Path.Combine(run, "checkpoints", ".tmp-step-00000020-deadbeef");
        Directory.CreateDirectory(leftover);
        File.WriteAllText(Path.Combine(leftover, "model.tensors"), "half written");

        var found = new CheckpointStore(run, _ => { }).FindNewest(Recipe.Source.Hash);
        Assert.Equal(10, found?.State.Step);
    }

    [Fact]
    public async Task Leftovers_of_killed_writes_are_removed_once_a_later_checkpoint_is_published_and_not_before()
    {
        var run = TestRecipes.TemporaryDirectory();
        var checkpoints = Path.Combine(run, "checkpoints");
        string Leftover(int step)
        {
            var path = Path.Combine(checkpoints, $".tmp-step-{step:D8}-deadbeef");
            Directory.CreateDirectory(path);
            File.WriteAllText(Path.Combine(path, "model.tensors"), "half written");
            return path;
        }
        var killedAt10 = Leftover(10);
        var ahead = Leftover(25);                                       // a step not yet published: left alone

        var log = new List<string>();
        await TrainerTests.Train(Recipe, run, maxSteps: 20, log: log);

        Assert.False(Directory.Exists(killedAt10), "the leftover of step 10 outlived the checkpoint of step 20");
        Assert.Contains(log, l => l.Contains(killedAt10) && l.Contains("did not finish"));
        Assert.True(Directory.Exists(ahead), "a write of a later step than any published may still be running");
        Assert.Equal(["step-00000010", "step-00000020"], Directory.GetDirectories(checkpoints, "step-*").Select(Path.GetFileName).Order());
    }

    [Fact]
    public async Task Flipped_byte_is_detected_and_the_previous_checkpoint_is_used()
    {
        var run = TestRecipes.TemporaryDirectory();
        await TrainerTests.Train(Recipe, run, maxSteps: 20); // checkpoints at 10 and 20
        var weights = Path.Combine(run, "checkpoints", "step-00000020", CheckpointStore.ModelFile);
        var bytes = File.ReadAllBytes(weights);
        bytes[bytes.Length / 2] ^= 0x01;
        File.WriteAllBytes(weights, bytes);

        var log = new List<string>();
        var found = new CheckpointStore(run, log.Add).FindNewest(Recipe.Source.Hash);
        Assert.Equal(10, found?.State.Step);
        Assert.Contains(log, l => l.Contains(weights) && l.Contains("checksum mismatch"));
    }

    [Fact]
    public async Task Checkpoint_of_another_recipe_is_refused_naming_both_hashes()
    {
        var run = TestRecipes.TemporaryDirectory();
        await TrainerTests.Train(Recipe, run, maxSteps: 10);
        var other = TestRecipes.Tiny(t => TestRecipes.Set(t, "lr", "0.001"));
        var e = await Assert.ThrowsAsync<InvalidOperationException>(() => TrainerTests.Train(other, run, resume: true));
        Assert.Contains(Recipe.Source.Hash, e.Message);
        Assert.Contains(other.Source.Hash, e.Message);
    }

    [Fact]
    public void Tensor_file_round_trips_names_dtypes_shapes_and_bits()
    {
        var path = Path.Combine(TestRecipes.TemporaryDirectory(), "t.tensors");
        using var a = randn(3, 4);
        using var b = arange(5, dtype: ScalarType.Int64);
        TensorFile.Write(path, [("a", a), ("b", b)]);
        using var a2 = zeros(3, 4);
        using var b2 = zeros(5, dtype: ScalarType.Int64);
        TensorFile.Read(path, new Dictionary<string, Tensor> { ["a"] = a2, ["b"] = b2 });
        Assert.True(a.bytes.SequenceEqual(a2.bytes));
        Assert.True(b.bytes.SequenceEqual(b2.bytes));
        using var wrongShape = zeros(4, 3);
        var e = Assert.Throws<InvalidDataException>(() => TensorFile.Read(path, new Dictionary<string, Tensor> { ["a"] = wrongShape, ["b"] = b2 }));
        Assert.Contains("'a'", e.Message);
    }
}
