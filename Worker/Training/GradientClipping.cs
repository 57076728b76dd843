using Pretrain.Data.Torch;
using TorchSharp;
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
    /// <param name="gradients">
    /// The gradients, in a fixed order: the flat gradient buckets (one square-sum and at most one <c>mul_</c> each), or
    /// each parameter's <c>.grad</c>.
    /// </param>
    public static double ClipGlobalNorm(IReadOnlyList<Tensor> gradients, double maxNorm)
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var squares = zeros(1, dtype: ScalarType.Float64);
        foreach (var grad in gradients)
            squares.add_(grad.square().sum().to(ScalarType.Float64), HeldScalars.One); // float64 sum: order-stable, no overflow
        var norm = Math.Sqrt(squares.item<double>());
        if (maxNorm > 0 && norm > maxNorm)
        {
            // An explicit Scalar, disposed here: TorchSharp 0.107 frees an implicit double→Scalar only in its
            // finalizer, which can run during the native call ("Unknown scalar type").
            using var factor = (maxNorm / (norm + 1e-6)).ToScalar(); // the 1e-6 is PyTorch's
            foreach (var grad in gradients)
                grad.mul_(factor);
        }
        return norm;
    }

    /// <summary>The same over the parameters' <c>.grad</c> (those without a gradient are left out): the reproducible path's.</summary>
    public static double ClipGlobalNorm(IReadOnlyList<Parameter> parameters, double maxNorm)
    {
        var gradients = new List<Tensor>(parameters.Count);
        try
        {
            foreach (var p in parameters)
                if (p.grad is { } grad) gradients.Add(grad);
            return ClipGlobalNorm(gradients, maxNorm);
        }
        finally
        {
            foreach (var grad in gradients) grad.Dispose();   // the handles only: the gradients live on in .grad
        }
    }
}
