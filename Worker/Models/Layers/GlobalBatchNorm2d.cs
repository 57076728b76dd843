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
/// One all-reduce of 2C + 1 floats in the forward — per channel Σ(x − K) and Σ(x − K)², then the count n — and,
/// through <see cref="ReplicaSumFunction"/>, one of the same size in the backward; everything else is ordinary
/// autograd. K is a per-channel shift, the running mean as the forward finds it: the same bits on every replica
/// (and every micro-shard thread of a reproducible run), and close to the batch mean once training has begun, so
/// var = S2/n − (S1/n)² does not lose the variance to the E[x²] − E[x]² cancellation of unshifted sums. (The first
/// step shifts by 0, which is fine for inputs near zero and only costs a few bits elsewhere; the variance is
/// clamped at 0 so rounding can never make it negative.) Running statistics use the global mean and unbiased
/// global variance, so they are identical on every worker. In eval mode this is plain batch norm with the running
/// statistics. Parameter and buffer names are BatchNorm2d's (weight, bias, running_mean, running_var,
/// num_batches_tracked), so checkpoints move freely between the two.
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
    private readonly Scalar _keep, _momentumScalar, _one, _two, _zero, _epsScalar;

    public GlobalBatchNorm2d(long channels, IReplicaSum replicas, double eps = 1e-5, double momentum = 0.1)
        : base(nameof(GlobalBatchNorm2d))
    {
        (_channels, _replicas, _eps, _momentum) = (channels, replicas, eps, momentum);
        _perChannel = [1, channels, 1, 1];
        (_keep, _momentumScalar, _one) = ((1 - momentum).ToScalar(), momentum.ToScalar(), 1.ToScalar());
        (_two, _zero, _epsScalar) = (2.ToScalar(), 0.0.ToScalar(), eps.ToScalar());
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

        using var scope = NewDisposeScope();
        // K, copied before the sum: a reproducible run's first shard thread moves the running mean once every shard
        // has passed the sum, and no other thread may see the moved one.
        var shift = _runningMean.detach().clone();                                                  // (C)
        var deviation = x - shift.view(_perChannel);                                                // (B, C, H, W): x − K
        using var localCount = tensor(new float[] { x.numel() / _channels });
        var sums = ReplicaSumFunction.Sum(                                                          // (2C + 1): Σ(x − K), Σ(x − K)², n
            cat([deviation.sum(AllButChannels), deviation.pow(_two).sum(AllButChannels), localCount]), _replicas);
        var count = sums[2 * _channels].detach();
        var shiftedMean = sums.narrow(0, 0, _channels) / count;                                      // E[x − K]
        var variance = (sums.narrow(0, _channels, _channels) / count - shiftedMean.pow(_two)).clamp_min(_zero); // biased, as BN normalises
        var centered = deviation - shiftedMean.view(_perChannel);                                    // x − mean
        var y = centered * variance.add(_epsScalar).rsqrt().view(_perChannel) * _weight.view(_perChannel) + _bias.view(_perChannel);

        if (_replicas.UpdatesStatistics)
        {
            using var noGrad = no_grad();
            var n = count.item<float>();
            using var unbias = (n / Math.Max(n - 1, 1)).ToScalar();
            using var mean = shift + shiftedMean.detach();                                         // K + E[x − K]
            _runningMean.mul_(_keep).add_(mean, alpha: _momentumScalar);
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
            _zero.Dispose();
            _epsScalar.Dispose();
        }
        base.Dispose(disposing);
    }
}
