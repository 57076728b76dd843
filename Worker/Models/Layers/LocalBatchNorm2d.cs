using Pretrain.Data.Torch;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pretrain.Worker.Models.Layers;

/// <summary>
/// Batch norm over the batch this worker (or micro-shard) holds: TorchSharp's <see cref="BatchNorm2d"/> written out,
/// with its parameters, buffers and names (weight, bias, running_mean, running_var, num_batches_tracked), its
/// initial values and the same native <c>batch_norm</c> call, so outputs, gradients and checkpoints are the same bit
/// for bit. It exists for one line: TorchSharp 0.107's BatchNorm forward moves its step counter by
/// <c>num_batches_tracked.add_(1)</c>, an implicit int→Scalar that only the finalizer frees and that the finalizer can
/// free during the native call (see <see cref="GlobalBatchNorm2d"/>) — in every layer, every step of MoCo and of
/// per-worker batch norm. Here the step and its alpha are <see cref="HeldScalars.One"/>, made once and never freed.
/// </summary>
public sealed class LocalBatchNorm2d : nn.Module<Tensor, Tensor>
{
    private readonly Parameter _weight, _bias;
    private readonly Tensor _runningMean, _runningVar, _batchesTracked;
    private readonly long _channels;
    private readonly double _eps, _momentum;

    public LocalBatchNorm2d(long channels, double eps = 1e-5, double momentum = 0.1) : base(nameof(LocalBatchNorm2d))
    {
        (_channels, _eps, _momentum) = (channels, eps, momentum);
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

    /// <summary>(B, C, H, W) → (B, C, H, W): batch statistics in training (moving the running ones), running statistics in eval.</summary>
    public override Tensor forward(Tensor x)
    {
        if (x.dim() != 4 || x.shape[1] != _channels)
            throw new ArgumentException($"LocalBatchNorm2d({_channels}) expects (B, {_channels}, H, W), got ({string.Join(", ", x.shape)})");
        if (training)
            _batchesTracked.add_(HeldScalars.One, HeldScalars.One);   // alpha explicit too: add_(x) passes an implicit one
        return nn.functional.batch_norm(x, _runningMean, _runningVar, _weight, _bias, training, _momentum, _eps);
    }
}
