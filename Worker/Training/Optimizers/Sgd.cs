using Pretrain.Data.Torch;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pretrain.Worker.Training.Optimizers;

/// <summary>
/// SGD with heavy-ball momentum and coupled L2 weight decay, as <c>torch.optim.SGD</c> computes it and as
/// MoCo trains (momentum 0.9, weight decay 1e-4):
/// <code>
///   g ← g + wd·w            (decayed parameters only)
///   v ← μ·v + g ;  w ← w − lr·v
/// </code>
/// The learning rate multiplies the velocity, not the gradient, so a schedule's change of lr takes
/// effect at once (LARS, written the other way, folds lr into the velocity).
/// </summary>
public sealed class Sgd : IOptimizer
{
    private sealed record Slot(string Name, Parameter Parameter, Tensor Velocity, bool Decays);

    private readonly Slot[] _slots;
    private readonly double _weightDecay;
    // Explicit scalars made once: an implicit double→Scalar is only freed by the finalizer, which can run during the
    // native call that uses it (TorchSharp 0.107 keeps no reference), see GlobalBatchNorm2d.
    private readonly Scalar _momentum, _decay;

    public long Step { get; set; }

    public Sgd(IEnumerable<(string Name, Parameter Parameter)> parameters, Func<string, Tensor, bool> decays,
        double momentum = 0.9, double weightDecay = 1e-4)
    {
        _weightDecay = weightDecay;
        (_momentum, _decay) = (momentum.ToScalar(), weightDecay.ToScalar());
        _slots = parameters.OrderBy(p => p.Name, StringComparer.Ordinal)
            .Select(p => new Slot(p.Name, p.Parameter, zeros_like(p.Parameter).DetachFromDisposeScope(), decays(p.Name, p.Parameter))).ToArray();
    }

    public IEnumerable<(string Name, Tensor Tensor)> StateTensors() => _slots.Select(s => ($"v.{s.Name}", s.Velocity));

    /// <summary>One update, in place: per parameter it allocates only the gradient's handle.</summary>
    public void Update(double lr)
    {
        Step++;
        using var noGrad = no_grad();
        using var step = (-lr).ToScalar();
        foreach (var s in _slots)
        {
            using var grad = s.Parameter.grad;
            if (grad is null) continue;
            s.Velocity.mul_(_momentum).add_(grad, HeldScalars.One);
            if (s.Decays && _weightDecay != 0)
                s.Velocity.add_(s.Parameter, alpha: _decay);
            s.Parameter.add_(s.Velocity, alpha: step);
        }
    }

    public void Dispose()
    {
        foreach (var s in _slots) s.Velocity.Dispose();
        _momentum.Dispose();
        _decay.Dispose();
    }
}
