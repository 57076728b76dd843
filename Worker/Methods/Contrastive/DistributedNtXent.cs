using Pretrain.Data.Sampling;
using Pretrain.Worker.Collectives;
using Pretrain.Worker.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Pretrain.Worker.Methods.Contrastive;

/// <summary>
/// NT-Xent over the <b>global</b> batch: every rank's embeddings are all-gathered so each anchor sees
/// negatives from all workers (lightning-bolts#179 is what happens otherwise), and the gradient is the
/// exact gradient of the global loss — not just the part through local anchors.
/// <para>
/// How, without a custom autograd function: the gathered matrix Z (2G, d) of the micro-step's G samples
/// becomes a leaf; each rank backpropagates the loss of its own anchors into Z.grad; the Z.grad of all
/// ranks are summed by allreduce (that is the backward of all-gather); each rank then pushes its rows of
/// the summed Z.grad into its own encoder. The loop sums the ranks' gradients, so the sum is the gradient
/// of the global loss.
/// </para>
/// Rows of Z are rank-major: rank r holds its first view's rows then its second view's. Shares may differ
/// by one sample when the world size does not divide G; the all-gather then carries every rank's rows
/// padded to the largest share, and the padding is dropped before the loss. Runs in three synchronous
/// steps around the two collectives, because TorchSharp's dispose scopes and grad mode belong to one
/// thread and an await may resume on another.
/// </summary>
public sealed class DistributedNtXent(double temperature)
{
    /// <summary>
    /// Computes this rank's share of the step's loss — its anchors' NT-Xent terms over the micro-step's 2G
    /// views, normalised by the global sample count as <see cref="MicroBatch.Weight"/> says — and
    /// backpropagates the exact gradient of the global loss into the graph behind its local views (n, d)
    /// each. Returns that share; the shares of all ranks sum to the step's loss.
    /// </summary>
    public async Task<double> ForwardBackwardAsync(Tensor view1, Tensor view2, MicroBatch batch, ICommunicator group, CancellationToken ct = default)
    {
        int world = group.WorldSize, rank = group.Rank;
        long n = view1.shape[0], d = view1.shape[1], g = batch.MicroGlobalCount;
        var counts = Enumerable.Range(0, world).Select(r => GlobalBatchSampler.Share(g, world, r).Count).ToArray();
        if (counts[rank] != n) throw new ArgumentException($"rank {rank} holds {n} samples of micro-step {batch.MicroStep}, expected {counts[rank]}");
        long m = counts.Max();                                                           // padded share

        using var local = cat([view1, view2], 0);                                       // (2n, d), carries the graph
        using var padded = zeros(2 * m, d, dtype: float32);                              // (2m, d): view 1 at 0, view 2 at m
        using (no_grad())
        {
            padded.narrow(0, 0, n).copy_(view1);
            padded.narrow(0, m, n).copy_(view2);
        }
        using var gathered = empty(world * 2 * m, d, dtype: float32);                    // (W·2m, d)
        await group.AllGather(padded, gathered, ct);

        // Z.grad of this rank's anchors, with its loss share appended as one more value so one allreduce carries both.
        var offsets = new long[world + 1];
        for (var r = 0; r < world; r++) offsets[r + 1] = offsets[r] + 2 * counts[r];
        using var reduced = empty(2 * g * d + 1, dtype: float32);
        double share;
        using (var scope = NewDisposeScope())
        using (var enableGrad = enable_grad())
        {
            var rows = Enumerable.Range(0, world).SelectMany(r => Enumerable.Range(0, counts[r]).Select(j => (long)(r * 2 * m + j))
                .Concat(Enumerable.Range(0, counts[r]).Select(j => (long)(r * 2 * m + m + j)))).ToArray();
            var z = gathered.index_select(0, tensor(rows)).detach().requires_grad_(true); // (2G, d), rank-major
            var anchors = Enumerable.Range(0, (int)(2 * n)).Select(i => offsets[rank] + i).ToArray();
            var positives = anchors.Select(i => i - offsets[rank] < n ? i + n : i - n).ToArray();
            using var anchorCount = (2.0 * g).ToScalar();                                // explicit Scalars: see GlobalBatchNorm2d
            using var microShare = ((double)g / batch.GlobalCount).ToScalar();
            var loss = NtXent.SumOverAnchors(z, anchors, positives, temperature).div(anchorCount).mul(microShare);
            loss.backward();
            reduced.narrow(0, 0, 2 * g * d).copy_(z.grad!.reshape(-1));
            share = loss.item<float>();
        }
        await group.AllReduceSum(reduced, ct);

        using (var scope = NewDisposeScope())
        {
            var mine = reduced.narrow(0, offsets[rank] * d, 2 * n * d).view(2 * n, d);
            local.backward([mine]);
        }
        return share;
    }
    /// <summary>
    /// The reproducible form, over micro-shards instead of ranks. <paramref name="z"/> (S·2b, d) holds every
    /// shard's two views in shard order (shard s: rows [2sb, 2sb + b) its first views, then its second), the
    /// same bits on every rank, so what this computes from it is the same on every rank and in every world:
    /// dL/dZ of the global loss (the mean over all 2·S·b anchors) and each shard's share of that loss (its
    /// anchors' terms over 2·S·b, summed in double). A shard's backward then starts from its own rows.
    /// </summary>
    public (Tensor Gradient, double[] Shares) ShardGradient(Tensor z, int shards)
    {
        long rows = z.shape[0], b = rows / (2 * shards);
        if (rows != 2 * shards * b) throw new ArgumentException($"{rows} embedding rows are not two views of {shards} equal micro-shards");
        var anchors = Enumerable.Range(0, (int)rows).Select(i => (long)i).ToArray();
        var positives = anchors.Select(i => i % (2 * b) < b ? i + b : i - b).ToArray();   // the other view, inside its shard's block
        using var scope = NewDisposeScope();
        using var enableGrad = enable_grad();
        var leaf = z.detach().requires_grad_(true);
        var terms = NtXent.PerAnchor(leaf, anchors, positives, temperature);             // (2Sb)
        using var anchorCount = rows.ToScalar();                                          // explicit: see GlobalBatchNorm2d
        terms.sum().div(anchorCount).backward();
        var values = terms.detach().data<float>().ToArray();
        var shares = new double[shards];
        for (var i = 0; i < values.Length; i++) shares[i / (2 * b)] += values[i];
        for (var s = 0; s < shards; s++) shares[s] /= rows;
        return (leaf.grad!.clone().MoveToOuterDisposeScope(), shares);
    }
}
