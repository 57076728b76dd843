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
    private sealed record Slot(string Name, Parameter Parameter, Tensor M, Tensor V, bool Decays);

    private readonly Slot[] _slots;
    private readonly double _beta1, _beta2, _eps, _weightDecay;

    public long Step { get; set; }

    public Lamb(IEnumerable<(string Name, Parameter Parameter)> parameters, Func<string, Tensor, bool> decaysAndAdapts,
        double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-6, double weightDecay = 0.01)
    {
        (_beta1, _beta2, _eps, _weightDecay) = (beta1, beta2, eps, weightDecay);
        _slots = parameters.OrderBy(p => p.Name, StringComparer.Ordinal).Select(p => new Slot(p.Name, p.Parameter,
            zeros_like(p.Parameter).DetachFromDisposeScope(), zeros_like(p.Parameter).DetachFromDisposeScope(),
            decaysAndAdapts(p.Name, p.Parameter))).ToArray();
    }

    public IEnumerable<(string Name, Tensor Tensor)> StateTensors() =>
        _slots.SelectMany(s => new[] { ($"m.{s.Name}", s.M), ($"v.{s.Name}", s.V) });

    public void Update(double lr)
    {
        Step++;
        double correction1 = 1 - Math.Pow(_beta1, Step), correction2 = 1 - Math.Pow(_beta2, Step);
        using var noGrad = no_grad();
        foreach (var s in _slots)
        {
            using var grad = s.Parameter.grad;
            if (grad is null) continue;
            using var scope = NewDisposeScope();
            s.M.mul_(_beta1).add_(grad, 1 - _beta1);
            s.V.mul_(_beta2).addcmul_(grad, grad, 1 - _beta2);
            var r = s.M.div(correction1).div_(s.V.div(correction2).sqrt_().add_(_eps));
            if (s.Decays && _weightDecay != 0) r.add_(s.Parameter, _weightDecay);
            var step = s.Decays ? r.mul(TrustRatio.Of(s.Parameter, r, 1.0)) : r;
            s.Parameter.sub_(step.mul_(lr));
        }
    }

    public void Dispose()
    {
        foreach (var s in _slots)
        {
            s.M.Dispose();
            s.V.Dispose();
        }
    }
}
