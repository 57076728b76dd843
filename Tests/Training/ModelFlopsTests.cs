using Pretrain.Shared.Recipes;
using Pretrain.Worker.Training;
using Xunit;

namespace Pretrain.Tests.Training;

public class ModelFlopsTests
{
    [Fact]
    public void FLOPs_per_token_follow_6N_plus_12LHQT()
    {
        // GPT-2 small as nanoGPT counts it: 124.4 M parameters, of which 1024x768 are position
        // embeddings; 12 layers, 12 heads of 64, context 1024.
        var shape = new TransformerModel(Layers: 12, Heads: 12, Width: 768, Context: 1024, Dropout: 0);
        long parameters = 124_439_808;
        double expected = 6.0 * (parameters - 1024 * 768) + 12.0 * 12 * 12 * 64 * 1024;
        Assert.Equal(expected, ModelFlops.PerToken(shape, parameters));
        Assert.InRange(ModelFlops.PerToken(shape, parameters), 8.5e8, 8.6e8);   // 6·123.6 M + 113 M ≈ 0.855 GFLOP per token
    }

    [Fact]
    public void The_measured_matmul_peak_is_a_plausible_CPU_figure()
    {
        double peak = ModelFlops.MeasuredPeak();
        Assert.InRange(peak, 1e8, 1e13);   // 0.1 GFLOP/s .. 10 TFLOP/s
    }
}
