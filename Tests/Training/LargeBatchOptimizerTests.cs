using Pretrain.Worker.Training.Optimizers;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;

namespace Pretrain.Tests.Training;

/// <summary>LARS, LAMB and momentum SGD against their formulas, written out in double precision.</summary>
public class LargeBatchOptimizerTests
{
    private static readonly float[] Start = [1.0f, -2.0f, 0.5f, 3.0f];
    private static readonly float[][] Gradients = [[0.1f, 0.2f, -0.3f, 0.05f], [-0.05f, 0.4f, 0.0f, -0.2f]];
    private const double Lr = 0.1;

    private static double Norm(IEnumerable<double> x) => Math.Sqrt(x.Sum(v => v * v));

    private static double[] LarsReference(bool regular, double momentum, double wd, double eta)
    {
        var w = Start.Select(x => (double)x).ToArray();
        var v = new double[w.Length];
        foreach (var gf in Gradients)
        {
            var g = gf.Select((x, i) => x + (regular ? wd * w[i] : 0)).ToArray();
            double wn = Norm(w), gn = Norm(g);
            double trust = regular && wn > 0 && gn > 0 ? eta * wn / gn : 1;
            for (var i = 0; i < w.Length; i++)
            {
                v[i] = momentum * v[i] + Lr * trust * g[i];
                w[i] -= v[i];
            }
        }
        return w;
    }

    private static double[] LambReference(bool regular, double b1, double b2, double eps, double wd)
    {
        var w = Start.Select(x => (double)x).ToArray();
        var m = new double[w.Length];
        var v = new double[w.Length];
        for (var t = 1; t <= Gradients.Length; t++)
        {
            var r = new double[w.Length];
            for (var i = 0; i < w.Length; i++)
            {
                double g = Gradients[t - 1][i];
                m[i] = b1 * m[i] + (1 - b1) * g;
                v[i] = b2 * v[i] + (1 - b2) * g * g;
                r[i] = m[i] / (1 - Math.Pow(b1, t)) / (Math.Sqrt(v[i] / (1 - Math.Pow(b2, t))) + eps) + (regular ? wd * w[i] : 0);
            }
            double wn = Norm(w), rn = Norm(r);
            double trust = regular && wn > 0 && rn > 0 ? wn / rn : 1;
            for (var i = 0; i < w.Length; i++) w[i] -= Lr * trust * r[i];
        }
        return w;
    }

    private static double[] SgdReference(bool decays, double momentum, double wd)
    {
        var w = Start.Select(x => (double)x).ToArray();
        var v = new double[w.Length];
        var lrs = new[] { Lr, Lr / 2 };                 // a schedule's change of lr applies to the whole velocity at once
        for (var t = 0; t < Gradients.Length; t++)
            for (var i = 0; i < w.Length; i++)
            {
                v[i] = momentum * v[i] + Gradients[t][i] + (decays ? wd * w[i] : 0);
                w[i] -= lrs[t] * v[i];
            }
        return w;
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Two_momentum_SGD_steps_match_torch_optim_SGD_s_formula(bool decays)
    {
        using var p = new Parameter(tensor(Start));
        using var optimizer = new Sgd([("w", p)], (_, _) => decays, momentum: 0.9, weightDecay: 0.01);
        p.grad = tensor(Gradients[0]);
        optimizer.Update(Lr);
        p.grad = tensor(Gradients[1]);
        optimizer.Update(Lr / 2);
        var actual = p.data<float>().ToArray();
        var expected = SgdReference(decays, 0.9, 0.01);
        for (var i = 0; i < expected.Length; i++) Assert.Equal(expected[i], actual[i], 5);
        Assert.NotEqual(SgdReference(!decays, 0.9, 0.01)[0], actual[0], 5);       // the decay exclusion is seen
        Assert.Equal(["v.w"], optimizer.StateTensors().Select(s => s.Name));       // the velocity is checkpointed
    }

    private static float[] Run(Func<Parameter, IOptimizer> create)
    {
        using var p = new Parameter(tensor(Start));
        using var optimizer = create(p);
        foreach (var g in Gradients)
        {
            p.grad = tensor(g);
            optimizer.Update(Lr);
        }
        Assert.Equal(Gradients.Length, optimizer.Step);
        return p.data<float>().ToArray();
    }

    [Theory]
    [InlineData(true)]    // weights: decayed and adapted
    [InlineData(false)]   // batch norm and biases: plain momentum SGD (SimCLR's exclusion)
    public void Two_LARS_steps_match_the_formula(bool regular)
    {
        var actual = Run(p => new Lars([("w", p)], (_, _) => regular, momentum: 0.9, weightDecay: 0.01, eta: 0.001));
        var expected = LarsReference(regular, 0.9, 0.01, 0.001);
        for (var i = 0; i < expected.Length; i++) Assert.Equal(expected[i], actual[i], 5);
        Assert.NotEqual(Start[0], actual[0]);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Two_LAMB_steps_match_the_formula(bool regular)
    {
        var actual = Run(p => new Lamb([("w", p)], (_, _) => regular, beta1: 0.9, beta2: 0.999, eps: 1e-6, weightDecay: 0.01));
        var expected = LambReference(regular, 0.9, 0.999, 1e-6, 0.01);
        for (var i = 0; i < expected.Length; i++) Assert.Equal(expected[i], actual[i], 5);
    }

    [Fact]
    public void The_trust_ratio_is_one_for_a_zero_weight()
    {
        // ‖w‖ = 0 would make η‖w‖/‖g‖ zero and freeze the parameter forever; LARS takes a plain step.
        using var p = new Parameter(zeros(3));
        using var lars = new Lars([("w", p)], (_, _) => true, momentum: 0, weightDecay: 0, eta: 0.001);
        p.grad = tensor(new[] { 1f, 2f, 3f });
        lars.Update(Lr);
        Assert.Equal(new[] { -0.1f, -0.2f, -0.3f }, p.data<float>().ToArray().Select(x => MathF.Round(x, 6)));
    }
}
