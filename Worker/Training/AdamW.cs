using Pretrain.Data.Torch;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pretrain.Worker.Training;

/// <summary>
/// AdamW (Loshchilov &amp; Hutter) written with torch ops under no_grad, so its state — m, v and the step
/// count — is ours to checkpoint bit for bit. The update is PyTorch's <c>torch.optim.AdamW</c>:
/// <code>
///   p ← p·(1 − lr·wd)                       (decoupled decay, decayed parameters only)
///   m ← β1·m + (1−β1)·g ;  v ← β2·v + (1−β2)·g²
///   p ← p − lr/(1−β1ᵗ) · m / (√v/√(1−β2ᵗ) + ε)
/// </code>
/// Which parameters decay is the caller's choice (<see cref="Models.Gpt.UsesWeightDecay"/>: Linear
/// matrices only; not biases, LayerNorm or embeddings).
/// </summary>
public sealed class AdamW : Optimizers.IOptimizer
{
    private sealed record Slot(string Name, Parameter Parameter, Tensor M, Tensor V, Tensor Scratch, bool Decays);

    private readonly Slot[] _slots;
    private readonly Optimizers.SharedScratch _scratch;   // each slot's Scratch is its view: the denominator, computed in place
    private readonly double _beta1, _beta2, _eps, _weightDecay;
    // Constant scalars made once: each implicit double→Scalar conversion is a native allocation that only the finalizer
    // frees, and it can free it during the native call that uses it (TorchSharp 0.107 keeps no reference; see GlobalBatchNorm2d).
    private readonly Scalar _beta1Scalar, _oneMinusBeta1, _beta2Scalar, _oneMinusBeta2;

    /// <summary>Optimizer steps taken so far (t in the bias corrections).</summary>
    public long Step { get; set; }

    public AdamW(IEnumerable<(string Name, Parameter Parameter)> parameters, Func<string, Tensor, bool> decays,
        double beta1, double beta2, double eps, double weightDecay)
    {
        (_beta1, _beta2, _eps, _weightDecay) = (beta1, beta2, eps, weightDecay);
        (_beta1Scalar, _oneMinusBeta1) = (beta1.ToScalar(), (1 - beta1).ToScalar());
        (_beta2Scalar, _oneMinusBeta2) = (beta2.ToScalar(), (1 - beta2).ToScalar());
        var ordered = parameters.OrderBy(p => p.Name, StringComparer.Ordinal).ToArray();
        _scratch = new Optimizers.SharedScratch([.. ordered.Select(p => (Tensor)p.Parameter)]);
        _slots = ordered.Select((p, i) => new Slot(p.Name, p.Parameter,
            zeros_like(p.Parameter).DetachFromDisposeScope(), zeros_like(p.Parameter).DetachFromDisposeScope(),
            _scratch[i], decays(p.Name, p.Parameter))).ToArray();
    }

    /// <summary>The state to checkpoint: <c>m.NAME</c> and <c>v.NAME</c> for every parameter, by name.</summary>
    public IEnumerable<(string Name, Tensor Tensor)> StateTensors() =>
        _slots.SelectMany(s => new[] { ($"m.{s.Name}", s.M), ($"v.{s.Name}", s.V) });

    /// <summary>One update with learning rate <paramref name="lr"/>; parameters without a gradient are skipped.</summary>
    public void Update(double lr)
    {
        Step++;
        var biasCorrection1 = 1 - Math.Pow(_beta1, Step);
        var biasCorrection2 = 1 - Math.Pow(_beta2, Step);
        using var noGrad = no_grad();
        using var decay = (1 - lr * _weightDecay).ToScalar();
        using var rootCorrection2 = Math.Sqrt(biasCorrection2).ToScalar();
        using var eps = _eps.ToScalar();
        using var stepSize = (-lr / biasCorrection1).ToScalar();
        foreach (var s in _slots)
        {
            using var grad = s.Parameter.grad;
            if (grad is null)
                continue;
            if (s.Decays && _weightDecay != 0)
                s.Parameter.mul_(decay);
            s.M.mul_(_beta1Scalar).add_(grad, _oneMinusBeta1);
            s.V.mul_(_beta2Scalar).addcmul_(grad, grad, _oneMinusBeta2);
            s.Scratch.copy_(s.V).sqrt_().div_(rootCorrection2).add_(eps, HeldScalars.One); // denominator, no allocation
            s.Parameter.addcdiv_(s.M, s.Scratch, stepSize);
        }
    }

    public void Dispose()
    {
        foreach (var s in _slots)
        {
            s.M.Dispose();
            s.V.Dispose();
        }
        _scratch.Dispose();
        _beta1Scalar.Dispose();
        _oneMinusBeta1.Dispose();
        _beta2Scalar.Dispose();
        _oneMinusBeta2.Dispose();
    }
}
