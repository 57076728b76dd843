using TorchSharp;
using static TorchSharp.torch;

namespace Pretrain.Worker.Methods.Bootstrap;

/// <summary>
/// BYOL's loss: the online network's prediction of one view regresses the target network's projection of the
/// other, 2 − 2·cos(p, z) = ‖p/‖p‖ − z/‖z‖‖², in [0, 4] — the squared distance of the unit vectors, written as
/// such so the identity needs no scalar arithmetic. Symmetric: each view is predicted from the other, and a
/// sample's loss is the sum of both terms, in [0, 8]. No negatives, so no sample's loss depends on another's
/// (only batch norm couples them), and the per-sample losses can be summed rank by rank or shard by shard.
/// The caller holds the targets without a graph: the stop-gradient is what keeps BYOL from collapsing onto a
/// constant along with its target.
/// </summary>
public static class ByolLoss
{
    /// <summary>2 − 2·cos(p, z) row by row: (B, d), (B, d) → (B).</summary>
    public static Tensor Regression(Tensor predictions, Tensor targets)
    {
        if (!predictions.shape.SequenceEqual(targets.shape))
            throw new ArgumentException($"predictions ({string.Join(", ", predictions.shape)}) and targets ({string.Join(", ", targets.shape)}) differ in shape");
        using var scope = NewDisposeScope();
        var p = nn.functional.normalize(predictions, p: 2, dim: 1);
        var z = nn.functional.normalize(targets, p: 2, dim: 1);
        // pow(two), not square(): square() is pow(2) inside TorchSharp, an implicit int→Scalar that the finalizer may free
        // during the native call (see GlobalBatchNorm2d).
        using var two = 2.ToScalar();
        return (p - z).pow(two).sum(1).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The symmetric loss of each of n samples: <paramref name="predictions"/> and <paramref name="targets"/> are
    /// (2n, d) with view 1 of the samples in rows [0, n) and view 2 in [n, 2n) — one forward of both views, as
    /// the method runs them. Returns (n): Regression(p₁, z₂) + Regression(p₂, z₁).
    /// </summary>
    public static Tensor Symmetric(Tensor predictions, Tensor targets)
    {
        long rows = predictions.shape[0], n = rows / 2;
        if (rows != 2 * n)
            throw new ArgumentException($"{rows} rows are not two views of the same samples");
        using var scope = NewDisposeScope();
        var otherView = cat([targets.narrow(0, n, n), targets.narrow(0, 0, n)], 0);   // row i's target: the same sample's other view
        var terms = Regression(predictions, otherView);                                 // (2n)
        return (terms.narrow(0, 0, n) + terms.narrow(0, n, n)).MoveToOuterDisposeScope();
    }
}
