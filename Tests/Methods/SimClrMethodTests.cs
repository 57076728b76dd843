using Pretrain.Shared.Recipes;
using Pretrain.Tests.Collectives;
using Pretrain.Tests.Training;
using Pretrain.Worker.Collectives;
using Pretrain.Worker.Training;
using Xunit;

namespace Pretrain.Tests.Methods;

public class SimClrMethodTests
{
    [Fact]
    public async Task Two_workers_lower_the_NT_Xent_loss_with_identical_replicas_and_learn_features_that_beat_chance()
    {
        var recipe = SmallFashionMnist.Recipe(steps: 30, method: "simclr");
        var (results, losses) = await SmallFashionMnist.TrainRing(recipe, TestRecipes.TemporaryDirectory(), long.MaxValue, resume: false);

        Assert.Equal(results[0].ReplicaChecksum, results[1].ReplicaChecksum);
        var first = losses.Take(3).Average();        // ≈ ln(2·64 − 1) = 4.84 for random embeddings
        var last = losses.TakeLast(3).Average();
        Assert.True(last < first - 0.3, $"NT-Xent went from {first:F3} to {last:F3}; losses: {string.Join(", ", losses.Select(l => l.ToString("F2")))}");
        Assert.Equal(results[0].Eval["knn_accuracy"], results[1].Eval["knn_accuracy"]);
        Assert.True(results[0].Eval["knn_accuracy"] > 0.4, $"kNN accuracy {results[0].Eval["knn_accuracy"]} (chance 0.1)");
    }

    [Fact]
    public async Task With_global_batch_norm_two_workers_take_the_same_steps_as_one_worker_holding_the_global_batch()
    {
        var recipe = SmallFashionMnist.Recipe(steps: 3, method: "simclr");
        Assert.True(((ContrastiveOptions)recipe.Options).GlobalBatchNorm, "global batch norm is SimCLR's default");
        var perWorkerNorm = RecipeLoader.Parse(recipe.Source.Text.Replace("temperature: 0.2", "temperature: 0.2\n  global_batch_norm: false"), recipe.Source.Path);

        var one = await TrainOne(recipe);
        var (_, two) = await SteppedRing(recipe);
        var (_, perWorker) = await SteppedRing(perWorkerNorm);

        // Same loss (forward) and same global gradient norm (backward) at every step, and so the same updates.
        for (var step = 0; step < one.Count; step++)
        {
            Assert.True(Math.Abs(one[step].Loss - two[step].Loss) < 1e-4, $"step {step + 1}: loss {two[step].Loss:F6} on 2 workers, {one[step].Loss:F6} on 1");
            Assert.True(Math.Abs(one[step].GradientNorm - two[step].GradientNorm) < 1e-4 * one[step].GradientNorm,
                $"step {step + 1}: gradient norm {two[step].GradientNorm:F6} on 2 workers, {one[step].GradientNorm:F6} on 1");
        }
        // Not trivially so: with batch norm per worker the very first forward differs.
        Assert.True(Math.Abs(one[0].Loss - perWorker[0].Loss) > 1e-3, $"per-worker BN loss {perWorker[0].Loss:F6} vs global {one[0].Loss:F6}");
    }

    /// <summary>Trains <paramref name="recipe"/> on one rank; returns its step reports.</summary>
    internal static async Task<List<StepReport>> TrainOne(Recipe recipe)
    {
        var steps = new List<StepReport>();
        using var trainer = new Trainer(recipe, 0, 1, new SingleRank(), TestRecipes.TemporaryDirectory(), _ => { });
        await trainer.RunAsync(recipe.Steps, resume: false, new SynchronousProgress<StepReport>(steps.Add), CancellationToken.None);
        return steps;
    }

    /// <summary>Trains <paramref name="recipe"/> on 2 ranks of a loopback ring; returns their results and rank 0's step reports.</summary>
    internal static async Task<(TrainingResult[] Results, List<StepReport> Steps)> SteppedRing(Recipe recipe)
    {
        await using var harness = new RingHarness(2);
        var ring = await harness.ConnectAsync(1);
        var steps = new List<StepReport>();
        var run = TestRecipes.TemporaryDirectory();
        var results = await Task.WhenAll(Enumerable.Range(0, 2).Select(async rank =>
        {
            using var trainer = new Trainer(recipe, rank, 2, ring[rank], run, _ => { });
            return await trainer.RunAsync(recipe.Steps, resume: false, rank == 0 ? new SynchronousProgress<StepReport>(steps.Add) : null, CancellationToken.None);
        }));
        return (results, steps);
    }
}
