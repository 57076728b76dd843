using Pretrain.Data.Torch;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pretrain.Worker.Training.Optimizers;

/// <summary>
/// LAMB (You et al. 2019, "Large Batch Optimization for Deep Learning: Training BERT in 76 minutes"):
/// Adam's direction, rescaled per layer by a trust ratio.
/// <code>
///   m ← β1·m + (1−β1)·g ;  v ← β2·v + (1−β2)·g²
///   r ← (m/(1−β1ᵗ)) / (√(v/(1−β2ᵗ)) + ε) + wd·w        (decay for decayed parameters only)
///   w ← w − lr · (‖w‖/‖r‖) · r                           (ratio 1 when a norm is 0 or not adapted)
/// </code>
/// </summary>
public sealed class Lamb : IOptimizer
{
    private sealed record Slot(string Name, Parameter Parameter, Tensor M, Tensor V, Tensor Direction, Tensor Denominator, bool Decays);

    private readonly Slot[] _slots;
    private readonly SharedScratch _directions, _denominators;   // each slot's r and √v̂ + ε, computed in place in views made once
    private readonly TrustRatio _trust = new(1.0);
    private readonly double _beta1, _beta2, _weightDecay;
    // Explicit scalars made once: an implicit double→Scalar is only freed by the finalizer, which can run during the
    // native call that uses it (TorchSharp 0.107 keeps no reference), see GlobalBatchNorm2d.
    private readonly Scalar _beta1Scalar, _oneMinusBeta1, _beta2Scalar, _oneMinusBeta2, _eps, _decay;

    public long Step { get; set; }

    public Lamb(IEnumerable<(string Name, Parameter Parameter)> parameters, Func<string, Tensor, bool> decaysAndAdapts,
        double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-6, double weightDecay = 0.01)
    {
        (_beta1, _beta2, _weightDecay) = (beta1, beta2, weightDecay);
        (_beta1Scalar, _oneMinusBeta1) = (beta1.ToScalar(), (1 - beta1).ToScalar());
        (_beta2Scalar, _oneMinusBeta2) = (beta2.ToScalar(), (1 - beta2).ToScalar());
        (_eps, _decay) = (eps.ToScalar(), weightDecay.ToScalar());
        var ordered = parameters.OrderBy(p => p.Name, StringComparer.Ordinal).ToArray();
        Tensor[] tensors = [.. ordered.Select(p => (Tensor)p.Parameter)];
        (_directions, _denominators) = (new SharedScratch(tensors), new SharedScratch(tensors));
        _slots = ordered.Select((p, i) => new Slot(p.Name, p.Parameter,
            zeros_like(p.Parameter).DetachFromDisposeScope(), zeros_like(p.Parameter).DetachFromDisposeScope(),
            _directions[i], _denominators[i], decaysAndAdapts(p.Name, p.Parameter))).ToArray();
    }

    public IEnumerable<(string Name, Tensor Tensor)> StateTensors() =>
        _slots.SelectMany(s => new[] { ($"m.{s.Name}", s.M), ($"v.{s.Name}", s.V) });

    /// <summary>One update; per parameter it allocates only the gradient's handle and, for adapted ones, the two norms.</summary>
    public void Update(double lr)
    {
        Step++;
        double correction1 = 1 - Math.Pow(_beta1, Step), correction2 = 1 - Math.Pow(_beta2, Step);
        using var noGrad = no_grad();
        using var correction1Scalar = correction1.ToScalar();
        using var correction2Scalar = correction2.ToScalar();
        using var lrScalar = lr.ToScalar();
        foreach (var s in _slots)
        {
            using var grad = s.Parameter.grad;
            if (grad is null) continue;
            s.M.mul_(_beta1Scalar).add_(grad, _oneMinusBeta1);
            s.V.mul_(_beta2Scalar).addcmul_(grad, grad, _oneMinusBeta2);
            var denominator = s.Denominator.copy_(s.V).div_(correction2Scalar).sqrt_().add_(_eps, HeldScalars.One);   // √(v/(1−β2ᵗ)) + ε
            var r = s.Direction.copy_(s.M).div_(correction1Scalar).div_(denominator);              // (m/(1−β1ᵗ)) / (√… + ε)
            if (s.Decays && _weightDecay != 0) r.add_(s.Parameter, _decay);                        // + wd·w
            if (s.Decays) r.mul_(_trust.Of(s.Parameter, r));                                       // ‖w‖/‖r‖ · r
            s.Parameter.sub_(r.mul_(lrScalar));
        }
    }

    public void Dispose()
    {
        foreach (var s in _slots)
        {
            s.M.Dispose();
            s.V.Dispose();
        }
        _directions.Dispose();
        _denominators.Dispose();
        _trust.Dispose();
        foreach (var scalar in new[] { _beta1Scalar, _oneMinusBeta1, _beta2Scalar, _oneMinusBeta2, _eps, _decay }) scalar.Dispose();
    }
}
