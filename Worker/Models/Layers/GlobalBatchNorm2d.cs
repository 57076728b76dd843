using Pretrain.Data.Torch;
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
/// One collective each way, as PyTorch's SyncBatchNorm makes: the forward gathers every replica's count,
/// mean and Σ(x − mean)² per channel (R × (2C + 1) floats for R replicas, an all-gather built from one
/// sum, <see cref="IReplicaSum.Replica"/>) and combines them in replica order by Chan's parallel
/// variance: Σ M2ᵢ + Σ nᵢ(meanᵢ − mean)², every term positive, so no E[x²] − E[x]² cancellation however
/// far the inputs are from zero. The backward is that sum's gradient, one all-reduce of the same size
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
    private static readonly long[] Replicas = [0];   // not sum(0): a literal 0 converts to ScalarType (Byte) and picks the dtype overload

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
    private readonly Scalar _keep, _momentumScalar, _two, _epsScalar;

    public GlobalBatchNorm2d(long channels, IReplicaSum replicas, double eps = 1e-5, double momentum = 0.1)
        : base(nameof(GlobalBatchNorm2d))
    {
        (_channels, _replicas, _eps, _momentum) = (channels, replicas, eps, momentum);
        _perChannel = [1, channels, 1, 1];
        (_keep, _momentumScalar) = ((1 - momentum).ToScalar(), momentum.ToScalar());
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
            _batchesTracked.add_(HeldScalars.One, HeldScalars.One);
            return nn.functional.batch_norm(x, _runningMean, _runningVar, _weight, _bias, training: true, momentum: _momentum, eps: _eps);
        }

        using var scope = NewDisposeScope();
        var (count, mean, variance) = GlobalStatistics(x);
        var y = (x - mean.view(_perChannel)) * variance.add(_epsScalar).rsqrt().view(_perChannel) * _weight.view(_perChannel)
            + _bias.view(_perChannel);

        if (_replicas.UpdatesStatistics)
        {
            using var noGrad = no_grad();
            using var unbias = (count / Math.Max(count - 1, 1)).ToScalar();
            _runningMean.mul_(_keep).add_(mean.detach(), alpha: _momentumScalar);
            _runningVar.mul_(_keep).add_(variance.detach().mul(unbias), alpha: _momentumScalar);
            _batchesTracked.add_(HeldScalars.One, HeldScalars.One);
        }
        return y.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The global batch's sample count, per-channel mean and biased variance, differentiable in <paramref name="x"/>:
    /// each replica's own (n, mean, M2) in its slot of an R × (2C + 1) tensor, summed over the replicas (so gathered:
    /// every element has one contributor, and adding zeros is exact), then combined in slot order — the same order and
    /// values on every replica, so reproducible runs stay bit-exact whatever the world size.
    /// </summary>
    private (float Count, Tensor Mean, Tensor Variance) GlobalStatistics(Tensor x)
    {
        var n = x.numel() / _channels;
        var localMean = x.mean(AllButChannels);
        var localM2 = (x - localMean.view(_perChannel)).pow(_two).sum(AllButChannels);
        using var localCount = tensor(new float[] { n });
        var width = 2 * _channels + 1;
        var (slot, slots) = (_replicas.Replica, _replicas.Replicas);
        var gathered = ReplicaSumFunction.Sum(cat([zeros(slot * width), localCount, localMean, localM2, zeros((slots - slot - 1) * width)]), _replicas)
            .view(slots, width);
        var counts = gathered.narrow(1, 0, 1).detach();                  // (R, 1)
        var means = gathered.narrow(1, 1, _channels);                    // (R, C)
        var m2s = gathered.narrow(1, 1 + _channels, _channels);          // (R, C)
        var total = counts.sum();
        var mean = (means * counts).sum(Replicas) / total;
        var m2 = m2s.sum(Replicas) + ((means - mean).pow(_two) * counts).sum(Replicas);
        return (total.item<float>(), mean, m2 / total);
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _keep.Dispose();
            _momentumScalar.Dispose();
            _two.Dispose();
            _epsScalar.Dispose();
        }
        base.Dispose(disposing);
    }
}
