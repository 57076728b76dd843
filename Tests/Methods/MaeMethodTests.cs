using Pretrain.Shared.Recipes;
using Pretrain.Tests.Training;
using Pretrain.Worker.Collectives;
using Pretrain.Worker.Methods;
using Pretrain.Worker.Methods.Reconstruction;
using Pretrain.Worker.Training;
using Xunit;
using static TorchSharp.torch;

namespace Pretrain.Tests.Methods;

public class MaeMethodTests
{
    [Fact]
    public async Task Two_half_batches_add_up_to_the_gradient_of_the_whole_batch()
    {
        var recipe = SmallMae.Recipe(steps: 1);
        var ids = Enumerable.Range(0, 16).Select(i => (long)i * 3).ToArray();
        using var method = NewMethod(recipe);
        var single = new HostCommunicator(new SingleRank());

        var whole = await method.ForwardBackwardAsync(new MicroBatch(Step: 5, 0, 1, ids, GlobalCount: 16), single, CancellationToken.None);
        var wholeGradient = Gradients(method);
        var first = await method.ForwardBackwardAsync(new MicroBatch(Step: 5, 0, 1, ids[..8], GlobalCount: 16), single, CancellationToken.None);
        var second = await method.ForwardBackwardAsync(new MicroBatch(Step: 5, 0, 1, ids[8..], GlobalCount: 16), single, CancellationToken.None);
        var halves = Gradients(method);

        Assert.Equal(whole, first + second, 5);                     // each half differentiates its share of the whole batch's mean
        for (var i = 0; i < halves.Length; i++)
        {
            var difference = (halves[i] - wholeGradient[i]).abs().max().item<float>();
            Assert.True(difference <= 1e-5, $"{method.Parameters[i].Name}: the halves' gradient differs by {difference:E2}");
        }
        Assert.Contains(wholeGradient, g => g.abs().max().item<float>() > 1e-4);    // a gradient there is: the test would see a wrong one
    }

    [Fact]
    public async Task The_same_samples_at_the_same_step_give_the_same_loss_and_at_another_step_another()
    {
        var recipe = SmallMae.Recipe(steps: 1);
        using var method = NewMethod(recipe);
        var single = new HostCommunicator(new SingleRank());
        long[] ids = [3, 4];
        var a = await method.ForwardBackwardAsync(new MicroBatch(Step: 2, 0, 1, ids, GlobalCount: 2), single, CancellationToken.None);
        var b = await method.ForwardBackwardAsync(new MicroBatch(Step: 2, 0, 1, ids, GlobalCount: 2), single, CancellationToken.None);
        var c = await method.ForwardBackwardAsync(new MicroBatch(Step: 3, 0, 1, ids, GlobalCount: 2), single, CancellationToken.None);
        Assert.Equal(a, b);                                          // view and mask are functions of (seed, step, sample)
        Assert.NotEqual(a, c);                                       // another step, another view and mask
    }

    [Fact]
    public void Features_and_the_state_a_checkpoint_holds_are_the_encoders_and_its_fixed_positions()
    {
        using var method = NewMethod(SmallMae.Recipe(steps: 1));
        Assert.Equal(new[] { "decoder.positions", "encoder.positions" }, method.State.Select(s => s.Name));
        Assert.Empty(method.ForwardState);
        Assert.False(method.Decays("decoder.maskToken", method.Parameters.Single(p => p.Name == "decoder.maskToken").Parameter));
        using var images = rand(5, 1, 28, 28);
        using var features = method.Features(images);
        Assert.Equal(new long[] { 5, 4 * 64 }, features.shape);
        Assert.False(features.requires_grad);
        Assert.True(method.FlopsPerSample > 0);
    }

    [Theory]
    [InlineData(4, 16 * 64)]    // 7x7 patch tokens pooled to 4x4 regions
    [InlineData(7, 49 * 64)]    // every patch's token
    public void The_feature_grid_sets_how_many_regions_the_probe_sees(int grid, long width)
    {
        using var method = NewMethod(SmallMae.Recipe(steps: 1, featureGrid: grid));
        using var images = rand(3, 1, 28, 28);
        using var features = method.Features(images);
        Assert.Equal(new[] { 3, width }, features.shape);
    }

    [Fact]
    public void A_feature_grid_finer_than_the_patch_grid_is_refused_naming_the_field()
    {
        var e = Assert.Throws<RecipeException>(() => NewMethod(SmallMae.Recipe(steps: 1, featureGrid: 8)));
        Assert.Contains("model.feature_grid: 8 is finer than the 7x7 patch grid", e.Message);
    }

    [Fact]
    public async Task Two_workers_lower_the_reconstruction_loss_with_identical_replicas()
    {
        var recipe = SmallMae.Recipe(steps: 60);
        var (results, losses) = await SmallFashionMnist.TrainRing(recipe, TestRecipes.TemporaryDirectory(), long.MaxValue, resume: false);

        Assert.Equal(results[0].ReplicaChecksum, results[1].ReplicaChecksum);
        // A step's loss wanders by ±0.03 (75% of 64 images' patches hidden), so the learning shows in the validation
        // loss, the same 1,000 test images under one fixed masking, before and after training.
        using var untrained = NewMethod(recipe);
        var before = (await untrained.EvaluateAsync(new HostCommunicator(new SingleRank()), CancellationToken.None))["val_loss"];
        var after = results[0].Eval["val_loss"];
        var first = losses.Take(5).Average();
        Assert.True(after < 0.95 * before, $"validation loss {before:F4} untrained, {after:F4} after 60 steps; step losses: {string.Join(", ", losses.Select(l => l.ToString("F3")))}");
        Assert.Equal(results[0].Eval["val_loss"], results[1].Eval["val_loss"]);
        Assert.Equal(results[0].Eval["knn_accuracy"], results[1].Eval["knn_accuracy"]);
        Assert.InRange(results[0].Eval["val_loss"], 0, first);
        Assert.True(results[0].Eval["knn_accuracy"] > 0.3, $"kNN accuracy {results[0].Eval["knn_accuracy"]} (chance 0.1)");
    }

    [Fact]
    public async Task Stopped_and_resumed_it_ends_where_an_uninterrupted_run_ends()
    {
        var recipe = SmallMae.Recipe(steps: 6, checkpointEvery: 3);
        var (straight, _) = await SmallFashionMnist.TrainRing(recipe, TestRecipes.TemporaryDirectory(), long.MaxValue, resume: false);
        var run = TestRecipes.TemporaryDirectory();
        await SmallFashionMnist.TrainRing(recipe, run, maxSteps: 3, resume: false);
        var (resumed, _) = await SmallFashionMnist.TrainRing(recipe, run, long.MaxValue, resume: true);
        Assert.Equal(6, resumed[0].Step);
        Assert.Equal(straight[0].ReplicaChecksum, resumed[0].ReplicaChecksum);     // the same views and masks after the resume
    }

    private static MaeMethod NewMethod(Recipe recipe) =>
        new(new MethodContext(recipe, TimeSpan.FromSeconds(30), new StepPhases(), _ => { }));

    /// <summary>Each parameter's accumulated gradient, copied, then zeroed for the next pass.</summary>
    private static Tensor[] Gradients(MaeMethod method)
    {
        var copies = method.Parameters.Select(p => p.Parameter.grad!.clone()).ToArray();
        foreach (var (_, p) in method.Parameters)
            p.grad!.zero_();
        return copies;
    }
}
