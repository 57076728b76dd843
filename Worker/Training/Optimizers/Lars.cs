using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pretrain.Worker.Training.Optimizers;

/// <summary>
/// LARS (You, Gitman &amp; Ginsburg 2017) as SimCLR trains with it at large batch:
/// <code>
///   g ← g + wd·w                                   (decayed parameters only)
///   trust ← η·‖w‖/‖g‖  (1 when a norm is 0, or for parameters excluded from adaptation)
///   v ← μ·v + lr·trust·g ;  w ← w − v
/// </code>
/// SimCLR excludes batch-norm and bias parameters from both weight decay and adaptation; the caller
/// decides per parameter. η = 0.001 is the paper's trust coefficient.
/// </summary>
public sealed class Lars : IOptimizer
{
    private sealed record Slot(string Name, Parameter Parameter, Tensor Velocity, bool Decays, bool Adapts);

    private readonly Slot[] _slots;
    private readonly double _momentum, _weightDecay, _eta;

    public long Step { get; set; }

    public Lars(IEnumerable<(string Name, Parameter Parameter)> parameters, Func<string, Tensor, bool> decaysAndAdapts,
        double momentum = 0.9, double weightDecay = 1e-6, double eta = 0.001)
    {
        (_momentum, _weightDecay, _eta) = (momentum, weightDecay, eta);
        _slots = parameters.OrderBy(p => p.Name, StringComparer.Ordinal).Select(p =>
        {
            bool regular = decaysAndAdapts(p.Name, p.Parameter);
            return new Slot(p.Name, p.Parameter, zeros_like(p.Parameter).DetachFromDisposeScope(), regular, regular);
        }).ToArray();
    }

    public IEnumerable<(string Name, Tensor Tensor)> StateTensors() => _slots.Select(s => ($"v.{s.Name}", s.Velocity));

    public void Update(double lr)
    {
        Step++;
        using var noGrad = no_grad();
        // Explicit scalars, disposed here: an implicit double→Scalar is only freed by the finalizer, which can run
        // during the native call that uses it (TorchSharp 0.107 keeps no reference), see GlobalBatchNorm2d.
        using var lrScalar = lr.ToScalar();
        using var momentum = _momentum.ToScalar();
        using var decay = _weightDecay.ToScalar();
        foreach (var s in _slots)
        {
            using var grad = s.Parameter.grad;
            if (grad is null) continue;
            using var scope = NewDisposeScope();
            var g = s.Decays && _weightDecay != 0 ? grad.add(s.Parameter, decay) : grad;
            var scaled = s.Adapts ? g.mul(TrustRatio.Of(s.Parameter, g, _eta)).mul_(lrScalar) : g.mul(lrScalar);
            s.Velocity.mul_(momentum).add_(scaled);
            s.Parameter.sub_(s.Velocity);
        }
    }

    public void Dispose()
    {
        foreach (var s in _slots) s.Velocity.Dispose();
    }
}
