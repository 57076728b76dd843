using Pretrain.Worker.Collectives;
using Pretrain.Worker.Training;
using static TorchSharp.torch;

namespace Pretrain.Worker.Methods.Contrastive;

/// <summary>
/// NT-Xent over the <b>global</b> batch: every rank's embeddings are all-gathered so each anchor sees
/// negatives from all workers (lightning-bolts#179 is what happens otherwise), and the gradient is the
/// exact gradient of the global loss — not just the part through local anchors.
/// <para>
/// How, without a custom autograd function (TorchSharp has none usable here): the gathered matrix Z
/// (W·2n, d) becomes a leaf; each rank backpropagates the loss of its own anchors into Z.grad; the
/// Z.grad of all ranks are summed by allreduce (that is the backward of all-gather); each rank then
/// pushes its rows of the summed Z.grad into its own encoder. The loss sent back is multiplied by W
/// so that the data-parallel gradient <i>average</i> over ranks equals the global gradient.
/// </para>
/// Rows of Z are rank-major: rank r holds rows [r·2n, (r+1)·2n), its first view then its second.
/// Runs in three synchronous steps around the two collectives, because TorchSharp's dispose scopes and
/// grad mode belong to one thread and an await may resume on another.
/// </summary>
public sealed class DistributedNtXent(ICollectives collectives, double temperature)
{
    /// <summary>
    /// Computes the global loss of the local views (n, d) each and backpropagates its exact gradient,
    /// scaled by the world size, into the graph behind them. Returns the global mean loss (the same
    /// value on every rank).
    /// </summary>
    public async Task<double> ForwardBackwardAsync(Tensor view1, Tensor view2, CancellationToken ct = default)
    {
        int world = collectives.WorldSize, rank = collectives.Rank;
        long n = view1.shape[0], d = view1.shape[1], rows = 2 * n;

        using var local = cat([view1, view2], 0);                                       // (2n, d), carries the graph
        using var localData = local.detach().contiguous();
        using var gathered = empty(world * rows, d, dtype: float32);                   // (W·2n, d)
        await collectives.AllGatherAsync(new NativeMemory<float>(localData).Memory, new NativeMemory<float>(gathered).Memory, ct);

        // Z.grad of this rank's anchors, with the loss appended as one more value so one allreduce carries both.
        using var reduced = empty(world * rows * d + 1, dtype: float32);
        using (var scope = NewDisposeScope())
        using (var enableGrad = enable_grad())
        {
            var z = gathered.detach().requires_grad_(true);
            var anchors = Enumerable.Range(0, (int)rows).Select(i => rank * rows + i).ToArray();
            var positives = anchors.Select(i => (i - rank * rows) < n ? i + n : i - n).ToArray();
            var loss = NtXent.SumOverAnchors(z, anchors, positives, temperature).div(world * rows);
            loss.backward();
            reduced.narrow(0, 0, world * rows * d).copy_(z.grad!.reshape(-1));
            reduced[world * rows * d] = loss.detach();
        }
        await collectives.AllReduceSumAsync(new NativeMemory<float>(reduced).Memory, ct);

        using (var scope = NewDisposeScope())
        {
            var mine = reduced.narrow(0, rank * rows * d, rows * d).view(rows, d).mul(world);
            local.backward([mine]);
            return reduced[world * rows * d].item<float>();
        }
    }
}
