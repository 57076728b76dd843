using Pretrain.Worker.Methods.Bootstrap;
using Xunit;
using static TorchSharp.torch;

namespace Pretrain.Tests.Methods;

/// <summary>BYOL's pure pieces: the target's momentum schedule and the symmetric loss.</summary>
public class ByolTests
{
    [Fact]
    public void The_momentum_starts_at_its_base_and_rises_on_a_cosine_to_one_at_the_last_step()
    {
        const long steps = 400;
        Assert.Equal(0.99, ByolMomentum.At(0.99, 0, steps), 12);
        Assert.Equal(0.995, ByolMomentum.At(0.99, steps / 2, steps), 12);          // halfway: (cos(π/2) + 1) / 2 = 1/2 of the gap
        Assert.Equal(1.0, ByolMomentum.At(0.99, steps, steps), 12);
        Assert.Equal(1 - 0.01 * (Math.Cos(Math.PI * 0.25) + 1) / 2, ByolMomentum.At(0.99, 100, steps), 12);

        var schedule = Enumerable.Range(0, (int)steps + 1).Select(k => ByolMomentum.At(0.99, k, steps)).ToArray();
        for (var k = 1; k < schedule.Length; k++)
            Assert.True(schedule[k] >= schedule[k - 1], $"τ fell from {schedule[k - 1]} at step {k - 1} to {schedule[k]} at step {k}");
        Assert.All(schedule, tau => Assert.InRange(tau, 0.99, 1.0));
    }

    [Fact]
    public void A_run_resumed_at_any_step_applies_the_momentum_of_that_step()
    {
        // The schedule's only position is the step (checkpoints store it): a fresh process asked at step s gives
        // the bits an uninterrupted one computed at s, and a base or a length that differ give a different τ.
        const long steps = 300;
        var uninterrupted = new List<double>();
        for (long k = 0; k < steps; k++) uninterrupted.Add(ByolMomentum.At(0.996, k, steps));
        foreach (var resumeAt in new long[] { 1, 37, 150, 299 })
            Assert.Equal(BitConverter.DoubleToInt64Bits(uninterrupted[(int)resumeAt]), BitConverter.DoubleToInt64Bits(ByolMomentum.At(0.996, resumeAt, steps)));
        Assert.NotEqual(ByolMomentum.At(0.996, 150, steps), ByolMomentum.At(0.996, 150, 2 * steps));
        Assert.NotEqual(ByolMomentum.At(0.996, 150, steps), ByolMomentum.At(0.99, 150, steps));
    }

    [Fact]
    public void A_momentum_out_of_range_or_an_empty_schedule_is_refused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => ByolMomentum.At(1.5, 0, 10));
        Assert.Throws<ArgumentOutOfRangeException>(() => ByolMomentum.At(0.99, 0, 0));
    }

    [Fact]
    public void The_regression_loss_is_0_for_the_same_direction_2_for_orthogonal_and_4_for_opposite_vectors()
    {
        using var scope = NewDisposeScope();
        var p = tensor(new float[] { 1, 2, 3, -1, 0, 4 }).reshape(2, 3);
        Assert.True(ByolLoss.Regression(p, p).abs().max().item<float>() < 1e-6, "identical vectors");
        Assert.True(ByolLoss.Regression(p, p * 3.5).abs().max().item<float>() < 1e-6, "the length does not matter: cosine");
        var opposite = ByolLoss.Regression(p, -p);
        Assert.True((opposite - 4).abs().max().item<float>() < 1e-5, $"opposite vectors: {string.Join(", ", opposite.data<float>().ToArray())}");
        var x = tensor(new float[] { 1, 0, 0, 0, 2, 0 }).reshape(2, 3);
        var y = tensor(new float[] { 0, 5, 0, 0, 0, 1 }).reshape(2, 3);
        Assert.True((ByolLoss.Regression(x, y) - 2).abs().max().item<float>() < 1e-6, "orthogonal vectors");
    }

    [Fact]
    public void The_symmetric_loss_predicts_each_view_from_the_other_and_does_not_depend_on_which_view_is_first()
    {
        using var scope = NewDisposeScope();
        using var generator = new Generator(11UL);
        const long n = 5, d = 8;
        var p = randn(2 * n, d, generator: generator);                        // rows [0, n) view 1, [n, 2n) view 2
        var z = randn(2 * n, d, generator: generator);
        var loss = ByolLoss.Symmetric(p, z);                                   // (n)
        Assert.Equal(new[] { n }, loss.shape);

        // Written out: view 1's prediction against view 2's target, plus view 2's against view 1's.
        var written = ByolLoss.Regression(p.narrow(0, 0, n), z.narrow(0, n, n)) + ByolLoss.Regression(p.narrow(0, n, n), z.narrow(0, 0, n));
        Assert.True(loss.allclose(written, rtol: 1e-6, atol: 1e-6));

        // Swapping the two views of every sample (in predictions and targets alike) leaves every sample's loss.
        Tensor Swap(Tensor t) => cat([t.narrow(0, n, n), t.narrow(0, 0, n)], 0);
        Assert.True(ByolLoss.Symmetric(Swap(p), Swap(z)).allclose(loss, rtol: 1e-6, atol: 1e-6));

        // Each view predicting the other's target exactly gives 0; predicting its opposite, 4 per term, 8 per sample.
        Assert.True(ByolLoss.Symmetric(Swap(z), z).abs().max().item<float>() < 1e-5);
        Assert.True((ByolLoss.Symmetric(-Swap(z), z) - 8).abs().max().item<float>() < 1e-4);
        Assert.True(loss.min().item<float>() >= 0 && loss.max().item<float>() <= 8);
    }

    [Fact]
    public void Predictions_and_targets_of_different_shapes_are_refused()
    {
        using var scope = NewDisposeScope();
        Assert.Throws<ArgumentException>(() => ByolLoss.Regression(zeros(4, 3), zeros(4, 2)));
        Assert.Throws<ArgumentException>(() => ByolLoss.Symmetric(zeros(5, 3), zeros(5, 3)));
    }
}
