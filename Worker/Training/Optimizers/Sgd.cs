using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pretrain.Worker.Training.Optimizers;

/// <summary>
/// SGD with heavy-ball momentum and coupled L2 weight decay, as <c>torch.optim.SGD</c> computes it and as
/// MoCo (momentum 0.9, weight decay 1e-4) and the ResNet recipes train:
/// <code>
///   g ← g + wd·w            (decayed parameters only)
///   v ← μ·v + g ;  w ← w − lr·v
/// </code>
/// The learning rate multiplies the velocity, not the gradient, so a schedule's change of lr takes
/// effect at once (LARS, written the other way, folds lr into the velocity).
/// </summary>
public sealed class Sgd : IOptimizer
{
    private sealed record Slot(Parameter Parameter, Tensor Velocity, bool Decays);

    private readonly Slot[] _slots;
    private readonly (string Name, Tensor Velocity)[] _state;
    private readonly double _momentum, _weightDecay;

    public long Step { get; set; }

    public Sgd(IEnumerable<(string Name, Parameter Parameter)> parameters, Func<string, Tensor, bool> decays,
        double momentum = 0.9, double weightDecay = 1e-4)
    {
        (_momentum, _weightDecay) = (momentum, weightDecay);
        var ordered = parameters.OrderBy(p => p.Name, StringComparer.Ordinal).ToArray();
        _slots = ordered.Select(p => new Slot(p.Parameter, zeros_like(p.Parameter).DetachFromDisposeScope(), decays(p.Name, p.Parameter))).ToArray();
        _state = ordered.Select((p, i) => ($"v.{p.Name}", _slots[i].Velocity)).ToArray();
    }

    public IEnumerable<(string Name, Tensor Tensor)> StateTensors() => _state;

    public void Update(double lr)
    {
        Step++;
        using var noGrad = no_grad();
        foreach (var s in _slots)
        {
            using var grad = s.Parameter.grad;
            if (grad is null) continue;
            s.Velocity.mul_(_momentum).add_(grad);
            if (s.Decays && _weightDecay != 0)
                s.Velocity.add_(s.Parameter, alpha: _weightDecay);
            s.Parameter.add_(s.Velocity, alpha: -lr);
        }
    }

    public void Dispose()
    {
        foreach (var s in _slots) s.Velocity.Dispose();
    }
}
