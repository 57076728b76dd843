using Pretrain.Worker.Training;
using TorchSharp.Modules;
using Xunit;
using AdamW = Pretrain.Worker.Training.AdamW;
using static TorchSharp.torch;

namespace Pretrain.Tests.Training;

public class AdamWTests
{
    private const double Lr = 0.01, Beta1 = 0.9, Beta2 = 0.999, Eps = 1e-8, WeightDecay = 0.1;
    private static readonly float[] Start = [1.0f, -2.0f, 0.5f];
    private static readonly float[][] Gradients = [[0.1f, 0.2f, -0.3f], [-0.05f, 0.4f, 0.0f]];

    /// <summary>PyTorch's AdamW in double precision, step by step.</summary>
    private static double[] Reference(bool decays)
    {
        var p = Start.Select(x => (double)x).ToArray();
        var m = new double[p.Length];
        var v = new double[p.Length];
        for (var t = 1; t <= Gradients.Length; t++)
            for (var i = 0; i < p.Length; i++)
            {
                double g = Gradients[t - 1][i];
                if (decays) p[i] *= 1 - Lr * WeightDecay;
                m[i] = Beta1 * m[i] + (1 - Beta1) * g;
                v[i] = Beta2 * v[i] + (1 - Beta2) * g * g;
                var mHat = m[i] / (1 - Math.Pow(Beta1, t));
                var vHat = v[i] / (1 - Math.Pow(Beta2, t));
                p[i] -= Lr * mHat / (Math.Sqrt(vHat) + Eps);
            }
        return p;
    }

    private static float[] Run(bool decays)
    {
        using var p = new Parameter(tensor(Start));
        using var optimizer = new AdamW([("w", p)], (_, _) => decays, Beta1, Beta2, Eps, WeightDecay);
        foreach (var g in Gradients)
        {
            p.grad = tensor(g);
            optimizer.Update(Lr);
        }
        Assert.Equal(Gradients.Length, optimizer.Step);
        return p.data<float>().ToArray();
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Two_steps_match_the_AdamW_formula(bool decays)
    {
        var expected = Reference(decays);
        var actual = Run(decays);
        for (var i = 0; i < expected.Length; i++)
            Assert.Equal(expected[i], actual[i], 5);
    }

    [Fact]
    public void Weight_decay_changes_only_decayed_parameters() =>
        Assert.NotEqual(Run(decays: true)[0], Run(decays: false)[0]);
}
