using Pretrain.Data.Torch;
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
    private sealed record Slot(string Name, Parameter Parameter, Tensor Velocity, Tensor Scratch, bool Decays, bool Adapts);

    private readonly Slot[] _slots;
    private readonly SharedScratch _scratch;   // each slot's Scratch is its view: g, then trust·lr·g, computed in place
    private readonly TrustRatio _trust;
    private readonly double _weightDecay;
    // Explicit scalars made once: an implicit double→Scalar is only freed by the finalizer, which can run during the
    // native call that uses it (TorchSharp 0.107 keeps no reference), see GlobalBatchNorm2d.
    private readonly Scalar _momentum, _decay;

    public long Step { get; set; }

    public Lars(IEnumerable<(string Name, Parameter Parameter)> parameters, Func<string, Tensor, bool> decaysAndAdapts,
        double momentum = 0.9, double weightDecay = 1e-6, double eta = 0.001)
    {
        _weightDecay = weightDecay;
        (_momentum, _decay) = (momentum.ToScalar(), weightDecay.ToScalar());
        _trust = new TrustRatio(eta);
        var ordered = parameters.OrderBy(p => p.Name, StringComparer.Ordinal).ToArray();
        _scratch = new SharedScratch([.. ordered.Select(p => (Tensor)p.Parameter)]);
        _slots = ordered.Select((p, i) =>
        {
            bool regular = decaysAndAdapts(p.Name, p.Parameter);
            return new Slot(p.Name, p.Parameter, zeros_like(p.Parameter).DetachFromDisposeScope(), _scratch[i], regular, regular);
        }).ToArray();
    }

    public IEnumerable<(string Name, Tensor Tensor)> StateTensors() => _slots.Select(s => ($"v.{s.Name}", s.Velocity));

    /// <summary>One update; per parameter it allocates only the gradient's handle and, for adapted ones, the two norms.</summary>
    public void Update(double lr)
    {
        Step++;
        using var noGrad = no_grad();
        using var lrScalar = lr.ToScalar();
        foreach (var s in _slots)
        {
            using var grad = s.Parameter.grad;
            if (grad is null) continue;
            var g = s.Scratch.copy_(grad);
            if (s.Decays && _weightDecay != 0) g.add_(s.Parameter, _decay);        // g + wd·w
            if (s.Adapts) g.mul_(_trust.Of(s.Parameter, g));                        // trust·g
            s.Velocity.mul_(_momentum).add_(g.mul_(lrScalar), HeldScalars.One);                      // v ← μ·v + lr·trust·g
            s.Parameter.sub_(s.Velocity);
        }
    }

    public void Dispose()
    {
        foreach (var s in _slots) s.Velocity.Dispose();
        _scratch.Dispose();
        _trust.Dispose();
        _momentum.Dispose();
        _decay.Dispose();
    }
}
