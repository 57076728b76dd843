using TorchSharp;
using static TorchSharp.torch;

namespace Pretrain.Worker.Training.Optimizers;

/// <summary>
/// An optimizer written with torch ops under no_grad, so its whole state is ours to checkpoint bit for
/// bit (named tensors plus the step count). AdamW, LARS and LAMB implement it.
/// </summary>
public interface IOptimizer : IDisposable
{
    /// <summary>Optimizer steps taken so far.</summary>
    long Step { get; set; }

    /// <summary>The state to checkpoint, by name (e.g. <c>m.NAME</c>).</summary>
    IEnumerable<(string Name, Tensor Tensor)> StateTensors();

    /// <summary>One update with learning rate <paramref name="lr"/>; parameters without a gradient are skipped.</summary>
    void Update(double lr);
}

/// <summary>
/// The norm-based trust ratio shared by LARS and LAMB: η·‖w‖/‖u‖, or 1 when either norm is not positive. Computed on
/// the device without a host round trip (no <c>.item()</c>), into a 0-d tensor of its own per dtype and device, so the
/// only temporaries per parameter are the two norms (TorchSharp 0.107 has no <c>norm</c> with <c>out</c>, and its
/// <c>linalg.vector_norm</c> makes an implicit Scalar of its own). Every number is an explicit Scalar held here: an
/// implicit one is freed only by the finalizer, which can run during the native call that uses it (see GlobalBatchNorm2d).
/// </summary>
sealed class TrustRatio(double eta) : IDisposable
{
    private readonly Scalar _eta = eta.ToScalar(), _zero = 0.ToScalar(), _one = 1.0.ToScalar();
    private readonly Dictionary<(ScalarType, DeviceType, int), (Tensor Ratio, Tensor Degenerate)> _results = [];

    /// <summary>
    /// <c>where(‖w‖&gt;0 ∧ ‖u‖&gt;0, η‖w‖/‖u‖, 1)</c> as a 0-d tensor of <paramref name="weight"/>'s dtype, owned by this
    /// and overwritten by the next call.
    /// </summary>
    public Tensor Of(Tensor weight, Tensor update)
    {
        var (ratio, degenerate) = ResultFor(weight);
        using var weightNorm = weight.norm();
        using var updateNorm = update.norm();
        ratio.copy_(weightNorm).mul_(_eta).div_(updateNorm);                         // 0, ∞ or NaN when a norm is 0: replaced below
        degenerate.copy_(weightNorm.gt_(_zero).mul_(updateNorm.gt_(_zero))).logical_not_(); // norms become 1/0 flags; not both positive
        return ratio.masked_fill_(degenerate, _one);
    }

    private (Tensor Ratio, Tensor Degenerate) ResultFor(Tensor weight)
    {
        var key = (weight.dtype, weight.device_type, weight.device_index);
        if (!_results.TryGetValue(key, out var result))
        {
            result = (zeros(Array.Empty<long>(), dtype: weight.dtype, device: weight.device).DetachFromDisposeScope(),
                zeros(Array.Empty<long>(), dtype: ScalarType.Bool, device: weight.device).DetachFromDisposeScope());
            _results[key] = result;
        }
        return result;
    }

    public void Dispose()
    {
        foreach (var (ratio, degenerate) in _results.Values)
        {
            ratio.Dispose();
            degenerate.Dispose();
        }
        _eta.Dispose();
        _zero.Dispose();
        _one.Dispose();
    }
}
