using TorchSharp;
using static TorchSharp.torch;

namespace Pretrain.Worker.Methods.Contrastive;

/// <summary>
/// NT-Xent, SimCLR's normalized-temperature cross entropy. Rows are L2-normalized; anchor i's positive
/// is its other view, and every other row of the batch (both views) is a negative.
/// </summary>
public static class NtXent
{
    /// <summary>
    /// Summed loss of the anchor rows <paramref name="anchors"/> of <paramref name="embeddings"/> (M, d):
    /// each anchor's logits are its cosine similarities to every row but itself, divided by
    /// <paramref name="temperature"/>; its target is row <paramref name="positives"/>[k]. Returns a scalar.
    /// </summary>
    public static Tensor SumOverAnchors(Tensor embeddings, long[] anchors, long[] positives, double temperature) =>
        CrossEntropy(embeddings, anchors, positives, temperature, nn.Reduction.Sum);

    /// <summary>Each anchor's loss (A), as <see cref="SumOverAnchors"/> sums them.</summary>
    public static Tensor PerAnchor(Tensor embeddings, long[] anchors, long[] positives, double temperature) =>
        CrossEntropy(embeddings, anchors, positives, temperature, nn.Reduction.None);

    private static Tensor CrossEntropy(Tensor embeddings, long[] anchors, long[] positives, double temperature, nn.Reduction reduction)
    {
        using var scope = NewDisposeScope();
        var z = nn.functional.normalize(embeddings, p: 2, dim: 1);                      // (M, d)
        using var anchorIndex = tensor(anchors);
        // Explicit Scalars, disposed here: an implicit one is freed only by the finalizer, which can run during the
        // native call that uses it (TorchSharp 0.107 keeps no reference; see GlobalBatchNorm2d).
        using var tau = temperature.ToScalar();
        using var negativeInfinity = float.NegativeInfinity.ToScalar();
        var logits = z.index_select(0, anchorIndex).matmul(z.t()).div_(tau);            // (A, M)
        // An anchor is never its own negative: its self-similarity (1/τ) would dominate the softmax.
        using var self = anchorIndex.unsqueeze(1);                                       // (A, 1)
        using var minusInfinity = full(anchors.Length, 1, negativeInfinity, dtype: logits.dtype);
        logits = logits.scatter(1, self, minusInfinity);
        using var targets = tensor(positives);
        return nn.functional.cross_entropy(logits, targets, reduction: reduction).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The SimCLR loss of one batch of paired views (N, d) each: mean over the 2N anchors. The
    /// single-process reference that <see cref="DistributedNtXent"/> must equal.
    /// </summary>
    public static Tensor Loss(Tensor view1, Tensor view2, double temperature)
    {
        long n = view1.shape[0];
        using var both = cat([view1, view2], 0);                                        // (2N, d)
        var anchors = Enumerable.Range(0, (int)(2 * n)).Select(i => (long)i).ToArray();
        var positives = anchors.Select(i => i < n ? i + n : i - n).ToArray();
        using var sum = SumOverAnchors(both, anchors, positives, temperature);
        using var anchorCount = (2 * n).ToScalar();
        return sum.div(anchorCount);
    }
}
