using Pretrain.Shared.Recipes;
using Pretrain.Tests.Infrastructure;
using Pretrain.Worker.Models;
using Pretrain.Worker.Training.Checkpoints;
using Xunit;
using static TorchSharp.torch;

namespace Pretrain.Tests.Cluster;

/// <summary>Data-parallel training through the real CLI: real worker processes, real sockets, real journal.</summary>
public sealed class LocalRunTests(LocalRuns runs) : IClassFixture<LocalRuns>
{
    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    public async Task A_local_run_ends_at_the_requested_step_with_identical_replicas(int workers)
    {
        var run = await runs.Get($"w{workers}-30", "--recipe", LocalRuns.TinyRecipe, "--workers", workers.ToString(), "--max-steps", "30");

        Assert.True(run.ExitCode == 0, run.Output);
        var summary = run.Summary;
        Assert.Equal("completed", summary.Status);
        Assert.Equal(workers, summary.WorldSize);
        Assert.Equal(30, summary.Steps);
        Assert.Equal("gpt", summary.Method);
        Assert.Equal(workers, summary.ReplicaChecksums.Count);
        Assert.Single(summary.ReplicaChecksums.Values.Distinct());
        Assert.InRange(summary.FirstLoss, 5.0, 6.0);                                      // ln 256 = 5.55: bytes, uniform at the start
        Assert.True(summary.FinalLoss < summary.FirstLoss - 1.0, $"loss went from {summary.FirstLoss} to {summary.FinalLoss}");  // ~3.2 after 30 steps
        // Rank 0's figure is its samples over its steps' summed time, and every step lies within the job's wall time (whose
        // clock starts before any worker does; rounded to 10 ms): at least steps x batch / wall, on any load.
        double global = Pretrain.Tests.Training.TestRecipes.Tiny().Batch.Global;
        Assert.True(summary.SamplesPerSecond >= summary.Steps * global / (summary.WallSeconds + 0.005),
            $"{summary.SamplesPerSecond} samples/s, but {summary.Steps} steps of {global} took {summary.WallSeconds} s in all");
        Assert.InRange(summary.Mfu, 1e-4, 0.5);   // measured 0.12 on 2 cores; a tiny model on a CPU never reaches half the matmul peak
        Assert.Equal(Math.Exp(summary.Eval["val_loss"]), summary.Eval["perplexity"], 6);
        Assert.Equal(summary.Eval["val_loss"] / Math.Log(2), summary.Eval["bits_per_byte"], 9);
        Assert.True(summary.Eval["val_loss"] < summary.FirstLoss - 1.0, $"val_loss {summary.Eval["val_loss"]} after a first loss of {summary.FirstLoss}");
        Assert.True(File.Exists(Path.Combine(run.Directory, "journal.db")));
        Assert.True(File.Exists(Path.Combine(run.Checkpoint(30), "manifest.json")));
    }

    [Fact]
    public async Task A_run_stopped_at_step_20_and_resumed_ends_like_an_uninterrupted_run()
    {
        var uninterrupted = await runs.Get("w2-30", "--recipe", LocalRuns.TinyRecipe, "--workers", "2", "--max-steps", "30");
        string directory = runs.NewDirectory("resumed");

        var first = await LocalRuns.Start(directory, "--recipe", LocalRuns.TinyRecipe, "--workers", "2", "--max-steps", "20");
        Assert.True(first.ExitCode == 0, first.Output);
        Assert.Equal(20, first.Summary.Steps);
        var resumed = await LocalRuns.Start(directory, "--recipe", LocalRuns.TinyRecipe, "--workers", "2", "--max-steps", "30", "--resume");

        Assert.True(resumed.ExitCode == 0, resumed.Output);
        Assert.Equal(30, resumed.Summary.Steps);
        Assert.Equal(uninterrupted.Summary.ReplicaChecksums["0"], resumed.Summary.ReplicaChecksums["0"]);
        Assert.Single(resumed.Summary.ReplicaChecksums.Values.Distinct());
    }

    [Fact]
    public async Task Two_workers_end_with_the_same_weights_as_one_worker_with_the_same_global_batch()
    {
        var one = runs.Get("w1-10", "--recipe", LocalRuns.TinyRecipe, "--workers", "1", "--max-steps", "10");
        var two = runs.Get("w2-10", "--recipe", LocalRuns.TinyRecipe, "--workers", "2", "--max-steps", "10");
        foreach (var run in await Task.WhenAll(one, two)) Assert.True(run.ExitCode == 0, run.Output);

        var recipe = RecipeLoader.Load(LocalRuns.TinyRecipe);
        using var single = LoadWeights(recipe, (await one).Checkpoint(10));
        using var pair = LoadWeights(recipe, (await two).Checkpoint(10));
        double largest = 0;
        foreach (var ((name, a), (_, b)) in single.named_parameters().Zip(pair.named_parameters()))
        {
            using var diff = (a - b).abs().max();
            largest = Math.Max(largest, diff.item<float>());
        }
        Assert.True(largest <= 1e-5, $"largest absolute difference {largest:E2} > 1e-5");
    }

    static Gpt LoadWeights(Recipe recipe, string checkpoint)
    {
        var model = new Gpt(recipe.Transformer, seed: 0);
        using (no_grad())
            TensorFile.Read(Path.Combine(checkpoint, CheckpointStore.ModelFile),
                model.named_parameters().ToDictionary(p => p.name, p => (Tensor)p.parameter));
        return model;
    }
}
