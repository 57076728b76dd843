using static TorchSharp.torch;

namespace Pretrain.Worker.Training.Optimizers;

/// <summary>
/// An optimizer written with torch ops under no_grad, so its whole state is ours to checkpoint bit for
/// bit (named tensors plus the step count). AdamW, LARS and LAMB implement it.
/// </summary>
public interface IOptimizer : IDisposable
{
    /// <summary>Optimizer steps taken so far.</summary>
    long Step { get; set; }

    /// <summary>The state to checkpoint, by name (e.g. <c>m.NAME</c>).</summary>
    IEnumerable<(string Name, Tensor Tensor)> StateTensors();

    /// <summary>One update with learning rate <paramref name="lr"/>; parameters without a gradient are skipped.</summary>
    void Update(double lr);
}

/// <summary>The norm-based trust ratio shared by LARS and LAMB: η·‖w‖/‖u‖, or 1 when either norm is zero.</summary>
static class TrustRatio
{
    /// <summary>
    /// Computed on the device without a host round trip: <c>where(‖w‖&gt;0 ∧ ‖u‖&gt;0, η‖w‖/‖u‖, 1)</c>.
    /// Returns a scalar tensor the caller disposes.
    /// </summary>
    public static Tensor Of(Tensor weight, Tensor update, double eta)
    {
        using var weightNorm = weight.norm();
        using var updateNorm = update.norm();
        using var ratio = weightNorm.mul(eta).div(updateNorm);
        using var positive = weightNorm.gt(0).logical_and(updateNorm.gt(0));
        using var one = ones_like(ratio);
        return where(positive, ratio, one);
    }
}
