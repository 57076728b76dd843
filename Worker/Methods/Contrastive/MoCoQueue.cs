using TorchSharp;
using static TorchSharp.torch;

namespace Pretrain.Worker.Methods.Contrastive;

/// <summary>
/// MoCo's dictionary: a FIFO ring of the K most recent keys (K, d), filled with keys all-gathered from
/// every worker in rank order before enqueueing, so all replicas hold the same queue. K must be a
/// multiple of the global batch (as in MoCo's reference code) so a batch never wraps mid-way.
/// Its tensor and pointer are part of the checkpoint.
/// </summary>
public sealed class MoCoQueue : IDisposable
{
    public Tensor Keys { get; }        // (K, d), L2-normalized rows
    public long Pointer { get; set; }  // next row to overwrite
    public long Size { get; }

    public MoCoQueue(long size, long dimension, long seed)
    {
        // MoCo starts from random unit vectors, not zeros: zero keys would all be equally (un)similar.
        using var g = new Generator((ulong)seed);
        using var random = randn(size, dimension, generator: g);
        Keys = nn.functional.normalize(random, p: 2, dim: 1).DetachFromDisposeScope();
        Size = size;
    }

    /// <summary>Replaces the oldest rows with <paramref name="keys"/> (B, d), the global batch in rank order.</summary>
    public void Enqueue(Tensor keys)
    {
        long batch = keys.shape[0];
        if (Size % batch != 0)
            throw new ArgumentException($"queue size {Size} is not a multiple of the global batch {batch}");
        using var noGrad = no_grad();
        Keys.narrow(0, Pointer, batch).copy_(keys);
        Pointer = (Pointer + batch) % Size;
    }

    public void Dispose() => Keys.Dispose();
}

/// <summary>The key encoder follows the query encoder as an exponential moving average: θk ← m·θk + (1−m)·θq.</summary>
public static class MomentumUpdate
{
    public static void Apply(IReadOnlyList<Tensor> keyParameters, IReadOnlyList<Tensor> queryParameters, double momentum)
    {
        if (keyParameters.Count != queryParameters.Count)
            throw new ArgumentException($"key encoder has {keyParameters.Count} tensors, query encoder {queryParameters.Count}");
        using var noGrad = no_grad();
        // Explicit scalars, disposed here: an implicit double→Scalar may be finalized during the native call (see GlobalBatchNorm2d).
        using var keep = momentum.ToScalar();
        using var take = (1 - momentum).ToScalar();
        for (var i = 0; i < keyParameters.Count; i++)
            keyParameters[i].mul_(keep).add_(queryParameters[i], take);
    }
}
