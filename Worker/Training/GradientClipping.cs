using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pretrain.Worker.Training;

/// <summary>Global-norm gradient clipping, as <c>torch.nn.utils.clip_grad_norm_</c>.</summary>
public static class GradientClipping
{
    /// <summary>
    /// Scales every gradient by min(1, maxNorm / (‖g‖ + 1e-6)), where ‖g‖ is the L2 norm of all gradients
    /// together, and returns ‖g‖ before clipping. <paramref name="maxNorm"/> 0 only measures. Runs after the
    /// allreduce, so every rank sees the same norm and makes the same decision.
    /// </summary>
    public static double ClipGlobalNorm(IReadOnlyList<Parameter> parameters, double maxNorm)
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var squares = zeros(1, dtype: ScalarType.Float64);
        foreach (var p in parameters)
        {
            var grad = p.grad;
            if (grad is not null)
                squares.add_(grad.square().sum().to(ScalarType.Float64)); // float64 sum: order-stable, no overflow
        }
        var norm = Math.Sqrt(squares.item<double>());
        if (maxNorm > 0 && norm > maxNorm)
        {
            var factor = maxNorm / (norm + 1e-6); // the 1e-6 is PyTorch's
            foreach (var p in parameters)
                p.grad?.mul_(factor);
        }
        return norm;
    }
}
