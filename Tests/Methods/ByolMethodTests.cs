using Pretrain.Shared.Recipes;
using Pretrain.Tests.Training;
using Pretrain.Worker.Export;
using Pretrain.Worker.Methods;
using Pretrain.Worker.Methods.Bootstrap;
using Pretrain.Worker.Models.Vision;
using Pretrain.Worker.Training;
using Pretrain.Worker.Training.Checkpoints;
using Xunit;
using static TorchSharp.torch;

namespace Pretrain.Tests.Methods;

public class ByolMethodTests
{
    [Fact]
    public void The_target_network_is_state_apart_from_the_trained_parameters_and_starts_as_a_copy_of_the_online_one()
    {
        var recipe = SmallFashionMnist.Recipe(steps: 10, method: "byol");
        using var method = NewMethod(recipe);
        var parameters = method.Parameters.Select(p => p.Name).ToArray();
        var state = method.State.ToDictionary(s => s.Name, s => s.Tensor);

        // Trained: the online encoder and projector under SimCLR's names (what export and eval take), and the predictor.
        Assert.All(parameters, name => Assert.True(name.StartsWith("encoder.") || name.StartsWith("head.") || name.StartsWith(ByolMethod.PredictorPrefix), name));
        Assert.Contains(parameters, name => name.StartsWith(CheckpointExport.EncoderPrefix("byol")!, StringComparison.Ordinal));
        Assert.Contains(parameters, name => name.StartsWith(ByolMethod.PredictorPrefix, StringComparison.Ordinal));
        Assert.DoesNotContain(parameters, name => name.StartsWith(ByolMethod.TargetPrefix, StringComparison.Ordinal));
        Assert.Empty(parameters.Intersect(state.Keys));

        // Not trained: the target twin of every encoder and projector parameter, equal at the start, without gradient; none for the predictor.
        foreach (var (name, parameter) in method.Parameters)
        {
            if (name.StartsWith(ByolMethod.PredictorPrefix, StringComparison.Ordinal))
            {
                Assert.False(state.ContainsKey(ByolMethod.TargetPrefix + name), $"the predictor has no target: {name}");
                continue;
            }
            var target = state[ByolMethod.TargetPrefix + name];
            Assert.True(target.eq(parameter).all().item<bool>(), $"target.{name} is not a copy of {name}");
            Assert.False(target.requires_grad, $"target.{name} requires a gradient");
        }

        // The replica checksum covers the target's parameters; the forward moves every BN buffer, the target's too.
        Assert.Equal(parameters.Count(n => !n.StartsWith(ByolMethod.PredictorPrefix, StringComparison.Ordinal)), method.ReplicatedState.Count);
        Assert.All(method.ReplicatedState, s => Assert.StartsWith(ByolMethod.TargetPrefix, s.Name));
        Assert.Contains(state.Keys, name => name.StartsWith(ByolMethod.TargetPrefix, StringComparison.Ordinal) && name.EndsWith("running_mean", StringComparison.Ordinal));
        Assert.Equal(method.State.Count - method.ReplicatedState.Count, method.ForwardState.Count);

        // Features come from the online encoder, before the projector.
        using var images = zeros(2, 1, 28, 28);
        using var features = method.Features(images);
        Assert.Equal(new long[] { 2, SmallCnn.FeatureSize(channels: 32, grid: 2) }, features.shape);
    }

    [Fact]
    public void After_an_update_the_target_moves_towards_the_online_network_by_one_minus_the_scheduled_momentum()
    {
        var recipe = SmallFashionMnist.Recipe(steps: 10, method: "byol");
        using var method = NewMethod(recipe);
        using (no_grad())                                                          // a stand-in optimizer step: the online network leaves its target
            foreach (var (_, p) in method.Parameters)
                p.add_(0.25);
        var before = method.TargetParameters.Select(t => t.clone()).ToArray();
        var online = method.OnlineParameters.Select(t => t.clone()).ToArray();

        method.AfterUpdate(4);

        var tau = ByolMomentum.At(0.99, 4, 10);                                    // the recipe's byol.momentum_base and steps
        Assert.InRange(tau, 0.99, 0.999);
        for (var i = 0; i < before.Length; i++)
        {
            using var want = before[i] * tau + online[i] * (1 - tau);             // ξ ← τ·ξ + (1 − τ)·θ
            Assert.True(method.TargetParameters[i].allclose(want, rtol: 1e-5, atol: 1e-7), $"target tensor {i} is not the momentum average");
            using var moved = method.TargetParameters[i] - before[i];
            using var share = (online[i] - before[i]) * (1 - tau);                 // exactly 1 − τ of the way
            Assert.True(moved.allclose(share, rtol: 1e-3, atol: 1e-6), $"target tensor {i} moved {moved.abs().max().item<float>()}, expected {share.abs().max().item<float>()}");
            Assert.True(moved.abs().max().item<float>() > 0, $"target tensor {i} did not move");
            Assert.True(method.OnlineParameters[i].eq(online[i]).all().item<bool>(), $"the update changed online tensor {i}");
        }
    }

    [Fact]
    public async Task Two_workers_lower_the_BYOL_loss_with_identical_replicas_and_learn_features_that_beat_chance()
    {
        var recipe = SmallFashionMnist.Recipe(steps: 30, method: "byol");
        var (results, losses) = await SmallFashionMnist.TrainRing(recipe, TestRecipes.TemporaryDirectory(), long.MaxValue, resume: false);

        Assert.Equal(results[0].ReplicaChecksum, results[1].ReplicaChecksum);     // parameters and target network
        var first = losses.Take(3).Average();        // near 4 while the predictor's output is unrelated to the target (cos ≈ 0, 2 per view)
        var last = losses.TakeLast(3).Average();
        Assert.True(last < first - 0.2, $"BYOL loss went from {first:F3} to {last:F3}; losses: {string.Join(", ", losses.Select(l => l.ToString("F2")))}");
        Assert.Equal(results[0].Eval["knn_accuracy"], results[1].Eval["knn_accuracy"]);
        Assert.True(results[0].Eval["knn_accuracy"] > 0.4, $"kNN accuracy {results[0].Eval["knn_accuracy"]} (chance 0.1)");
    }

    [Fact]
    public async Task With_global_batch_norm_two_workers_take_the_same_steps_as_one_worker_holding_the_global_batch()
    {
        var recipe = SmallFashionMnist.Recipe(steps: 3, method: "byol");
        Assert.True(((ByolOptions)recipe.Options).GlobalBatchNorm, "global batch norm is BYOL's default");
        var perWorkerNorm = RecipeLoader.Parse(recipe.Source.Text.Replace("byol:\n", "byol:\n  global_batch_norm: false\n"), recipe.Source.Path);
        Assert.False(((ByolOptions)perWorkerNorm.Options).GlobalBatchNorm);

        var one = await SimClrMethodTests.TrainOne(recipe);
        var (twoResults, two) = await SimClrMethodTests.SteppedRing(recipe);
        var (_, perWorker) = await SimClrMethodTests.SteppedRing(perWorkerNorm);

        // Same loss (forward, of the online and the target network) and same global gradient norm (backward) at every step.
        for (var step = 0; step < one.Count; step++)
        {
            Assert.True(Math.Abs(one[step].Loss - two[step].Loss) < 1e-4, $"step {step + 1}: loss {two[step].Loss:F6} on 2 workers, {one[step].Loss:F6} on 1");
            Assert.True(Math.Abs(one[step].GradientNorm - two[step].GradientNorm) < 1e-4 * one[step].GradientNorm,
                $"step {step + 1}: gradient norm {two[step].GradientNorm:F6} on 2 workers, {one[step].GradientNorm:F6} on 1");
        }
        Assert.Equal(twoResults[0].ReplicaChecksum, twoResults[1].ReplicaChecksum);
        // Not trivially so: with batch norm per worker the very first forward differs.
        Assert.True(Math.Abs(one[0].Loss - perWorker[0].Loss) > 1e-3, $"per-worker BN loss {perWorker[0].Loss:F6} vs global {one[0].Loss:F6}");
    }

    [Fact]
    public async Task A_run_resumed_from_a_checkpoint_ends_with_the_same_parameters_and_target_network()
    {
        var recipe = SmallFashionMnist.Recipe(steps: 6, checkpointEvery: 3, method: "byol");
        var whole = TestRecipes.TemporaryDirectory();
        var (uninterrupted, _) = await SmallFashionMnist.TrainRing(recipe, whole, long.MaxValue, resume: false);
        var split = TestRecipes.TemporaryDirectory();
        await SmallFashionMnist.TrainRing(recipe, split, maxSteps: 3, resume: false);
        var (resumed, _) = await SmallFashionMnist.TrainRing(recipe, split, long.MaxValue, resume: true);

        // The resumed steps 4-6 applied τ(3), τ(4), τ(5) to the target they found in the checkpoint of step 3.
        Assert.Equal(uninterrupted[0].ReplicaChecksum, resumed[0].ReplicaChecksum);
        Assert.Equal(resumed[0].ReplicaChecksum, resumed[1].ReplicaChecksum);
        var a = FinalCheckpoint(recipe, whole);
        var b = FinalCheckpoint(recipe, split);
        var targets = a.Keys.Where(k => k.StartsWith(ByolMethod.TargetPrefix, StringComparison.Ordinal)).ToArray();
        Assert.NotEmpty(targets);
        foreach (var name in targets)
            Assert.True(a[name].eq(b[name]).all().item<bool>(), $"{name} differs after resume");
        // The target trails the online network: an average, not a copy.
        Assert.Contains(targets, name => a[name].dtype == ScalarType.Float32 && a.TryGetValue(name[ByolMethod.TargetPrefix.Length..], out var online)
            && !a[name].eq(online).all().item<bool>());
    }

    private static ByolMethod NewMethod(Recipe recipe) => new(new MethodContext(recipe, TimeSpan.FromSeconds(30), new StepPhases(), _ => { }));

    /// <summary>The parameters and State of the newest checkpoint of <paramref name="run"/> (step 6), loaded into a fresh method.</summary>
    private static Dictionary<string, Tensor> FinalCheckpoint(Recipe recipe, string run)
    {
        using var method = NewMethod(recipe);
        var checkpoint = new CheckpointStore(run, _ => { }).FindNewest(recipe.Source.Hash) ?? throw new InvalidOperationException($"no checkpoint in {run}");
        Assert.Equal(6, checkpoint.State.Step);
        var tensors = method.Parameters.Select(p => (p.Name, Tensor: (Tensor)p.Parameter)).Concat(method.State).ToDictionary(p => p.Name, p => p.Tensor);
        using (no_grad())
            checkpoint.LoadModel(tensors);
        return tensors.ToDictionary(t => t.Key, t => t.Value.detach().clone());
    }
}
