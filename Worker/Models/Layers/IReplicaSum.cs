using static TorchSharp.torch;

namespace Pretrain.Worker.Models.Layers;

/// <summary>
/// An elementwise sum over every data-parallel replica, done before the call returns: the one thing a
/// layer that spans workers (<see cref="GlobalBatchNorm2d"/>) needs of the data plane. Models see this,
/// not the network.
/// </summary>
public interface IReplicaSum
{
    /// <summary>Sums the contiguous float tensor <paramref name="data"/> over all replicas, in place. Throws when the collective fails.</summary>
    void SumInPlace(Tensor data);

    /// <summary>
    /// This replica's place among the <see cref="Replicas"/> that take part in a sum (its rank, or a reproducible run's
    /// micro-shard): a layer that needs every replica's values, not only their sum, writes its own into slot
    /// <see cref="Replica"/> of a zeroed tensor and sums that, an all-gather whose every element has one contributor.
    /// </summary>
    int Replica { get; }

    /// <summary>How many replicas take part in a sum.</summary>
    int Replicas { get; }

    /// <summary>
    /// Records a failure that happened where nothing can throw (inside autograd's backward, which runs
    /// under native code); later sums fail at once and <see cref="ThrowIfFailed"/> rethrows it.
    /// </summary>
    void Fail(Exception error);

    /// <summary>Rethrows the first recorded failure, if any: call after every backward that crossed a layer using this sum.</summary>
    void ThrowIfFailed();

    /// <summary>
    /// Whether this forward moves the layer's running statistics. A reproducible run computes a rank's
    /// micro-shards on concurrent threads, each seeing the same global statistics; one of them (the first
    /// local shard) moves the buffers, once, as one forward over the global batch would.
    /// </summary>
    bool UpdatesStatistics => true;

    /// <summary>
    /// No other replica takes part (one worker, no micro-shards): every sum is the identity, so a layer may compute alone
    /// with torch's fused kernels, as PyTorch's SyncBatchNorm falls back to <c>batch_norm</c> when the world size is 1.
    /// </summary>
    bool Alone => false;
}
