using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pretrain.Worker.Models.Layers;

/// <summary>
/// Batch norm over the <b>global</b> batch of all data-parallel workers (cross-replica or synchronised
/// BN, as SimCLR trains with): in training, each channel is normalised with the mean and variance of the
/// samples of every worker, and the gradient is the exact gradient through those global statistics —
/// the same, to rounding, as <see cref="BatchNorm2d"/> on one worker holding the whole global batch.
/// <para>
/// Two all-reduces of C + 1 and C floats in the forward (Σx with the count, then Σ(x − mean)²: the
/// two-pass variance, so no E[x²] − E[x]² cancellation) and the same two in the backward
/// (<see cref="ReplicaSumFunction"/>); everything else is ordinary autograd. Running statistics use the
/// global mean and unbiased global variance, so they are identical on every worker. In eval mode this is
/// plain batch norm with the running statistics, and so is training with no other replica (<see cref="IReplicaSum.Alone"/>:
/// one worker, no micro-shards), as PyTorch's SyncBatchNorm does. Parameter and buffer names are BatchNorm2d's (weight,
/// bias, running_mean, running_var, num_batches_tracked), so checkpoints move freely between the two.
/// </para>
/// </summary>
public sealed class GlobalBatchNorm2d : nn.Module<Tensor, Tensor>
{
    private static readonly long[] AllButChannels = [0, 2, 3];

    private readonly Parameter _weight, _bias;
    private readonly Tensor _runningMean, _runningVar, _batchesTracked;
    private readonly IReplicaSum _replicas;
    private readonly long _channels;
    private readonly long[] _perChannel;   // (1, C, 1, 1): how the statistics broadcast over a batch
    private readonly double _eps, _momentum;
    // Scalars made once and held by the module: an implicit double→Scalar is a native object that only the finalizer
    // frees, and TorchSharp 0.107 does not keep it alive across the native call, so a GC at the wrong moment hands
    // libtorch a freed Scalar ("Unknown scalar type", seen once in 2,337 steps of SimCLR).
    // Tensor.square() is pow(2) inside TorchSharp, an implicit int→Scalar of its own, hence pow(_two).
    private readonly Scalar _keep, _momentumScalar, _one, _two, _epsScalar;

    public GlobalBatchNorm2d(long channels, IReplicaSum replicas, double eps = 1e-5, double momentum = 0.1)
        : base(nameof(GlobalBatchNorm2d))
    {
        (_channels, _replicas, _eps, _momentum) = (channels, replicas, eps, momentum);
        _perChannel = [1, channels, 1, 1];
        (_keep, _momentumScalar, _one) = ((1 - momentum).ToScalar(), momentum.ToScalar(), 1.ToScalar());
        (_two, _epsScalar) = (2.ToScalar(), eps.ToScalar());
        _weight = new Parameter(ones(channels));
        _bias = new Parameter(zeros(channels));
        _runningMean = zeros(channels);
        _runningVar = ones(channels);
        _batchesTracked = tensor(0L);
        register_parameter("weight", _weight);
        register_parameter("bias", _bias);
        register_buffer("running_mean", _runningMean);
        register_buffer("running_var", _runningVar);
        register_buffer("num_batches_tracked", _batchesTracked);
    }

    /// <summary>(B, C, H, W) → (B, C, H, W).</summary>
    public override Tensor forward(Tensor x)
    {
        if (x.dim() != 4 || x.shape[1] != _channels)
            throw new ArgumentException($"GlobalBatchNorm2d({_channels}) expects (B, {_channels}, H, W), got ({string.Join(", ", x.shape)})");
        if (!training)
            return nn.functional.batch_norm(x, _runningMean, _runningVar, _weight, _bias, training: false, momentum: _momentum, eps: _eps);
        if (_replicas.Alone)
        {
            // The global batch is this batch: torch's fused batch norm computes the same statistics, running statistics and
            // gradient, one kernel each way, where the ops below cost SimCLR's one-worker step 51 ms more backward (docs/BENCHMARKS.md).
            _batchesTracked.add_(_one);
            return nn.functional.batch_norm(x, _runningMean, _runningVar, _weight, _bias, training: true, momentum: _momentum, eps: _eps);
        }

        using var scope = NewDisposeScope();
        using var localCount = tensor(new float[] { x.numel() / _channels });
        var sums = ReplicaSumFunction.Sum(cat([x.sum(AllButChannels), localCount]), _replicas);      // (C + 1): Σx per channel, then n
        var count = sums[_channels].detach();
        var mean = sums.narrow(0, 0, _channels) / count;
        var centered = x - mean.view(_perChannel);
        var variance = ReplicaSumFunction.Sum(centered.pow(_two).sum(AllButChannels), _replicas) / count;  // biased, as BN normalises
        var y = centered * variance.add(_epsScalar).rsqrt().view(_perChannel) * _weight.view(_perChannel) + _bias.view(_perChannel);

        if (_replicas.UpdatesStatistics)
        {
            using var noGrad = no_grad();
            var n = count.item<float>();
            using var unbias = (n / Math.Max(n - 1, 1)).ToScalar();
            _runningMean.mul_(_keep).add_(mean.detach(), alpha: _momentumScalar);
            _runningVar.mul_(_keep).add_(variance.detach().mul(unbias), alpha: _momentumScalar);
            _batchesTracked.add_(_one);
        }
        return y.MoveToOuterDisposeScope();
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _keep.Dispose();
            _momentumScalar.Dispose();
            _one.Dispose();
            _two.Dispose();
            _epsScalar.Dispose();
        }
        base.Dispose(disposing);
    }
}
