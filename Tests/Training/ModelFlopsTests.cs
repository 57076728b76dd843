using Pretrain.Shared.Recipes;
using Pretrain.Worker.Models.Vision;
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
    public void Small_CNN_FLOPs_are_its_three_convolutions_written_out()
    {
        // 28x28x1 → 32 @ 28x28 → 64 @ 14x14 → 128 @ 7x7, 3x3 kernels, 2 FLOPs per multiply-add.
        double expected = 2.0 * 9 * (1 * 32 * 28 * 28 + 32 * 64 * 14 * 14 + 64 * 128 * 7 * 7);
        Assert.Equal(expected, SmallCnn.ForwardFlops(1, 28, 28));
    }

    [Fact]
    public void ResNet18_with_the_small_image_stem_costs_the_published_0_56_GMACs_on_32_px()
    {
        // The CIFAR-style ResNet-18 (3x3 stem, no max-pool) is quoted at ~0.56 G multiply-adds on 32x32x3.
        Assert.InRange(ResNet18.ForwardFlops(3, 32, 32), 2 * 0.55e9, 2 * 0.56e9);
        // The head adds its two dense layers; SimCLR and MoCo multiply the network's forward by their passes.
        var shape = new VisionModel("resnet18", ProjectionHidden: 512, ProjectionDim: 128);
        Assert.Equal(ResNet18.ForwardFlops(3, 32, 32) + 2.0 * (512 * 512 + 512 * 128), ContrastiveNetwork.ForwardFlops(shape, 3, 32, 32));
    }

    [Fact]
    public void MAE_FLOPs_are_the_encoder_on_the_visible_patches_and_the_decoder_on_all_of_them_written_out()
    {
        // The shipped recipe: 49 patches of 4x4x1 = 16 values, 12 visible; a block's forward per token is 24·d² in its dense
        // layers (qkv 3d², projection d², MLP 8d², 2 FLOPs per multiply-add) and 4·T·d in attention (scores, weighted values).
        var shape = new VisionTransformerModel(PatchSize: 4, Layers: 4, Heads: 4, Width: 128);
        var options = new MaeOptions(MaskRatio: 0.75, DecoderWidth: 64, DecoderLayers: 1, DecoderHeads: 4, NormPixLoss: true);
        double encoder = 12 * (2.0 * 16 * 128 + 4 * (24.0 * 128 * 128 + 4.0 * 12 * 128));
        double decoder = 12 * (2.0 * 128 * 64) + 49 * (24.0 * 64 * 64 + 4.0 * 49 * 64 + 2.0 * 64 * 16);
        Assert.Equal(encoder + decoder, MaskedAutoencoder.ForwardFlops(shape, options, channels: 1, imageSize: 28));
        Assert.InRange(encoder + decoder, 2.4e7, 2.6e7);   // ~25 MFLOP forward, ~75 MFLOP per image trained: 12 of 49 patches encoded
    }

    [Fact]
    public void The_measured_matmul_peak_is_the_best_of_its_runs_and_within_what_the_cores_can_do()
    {
        // One 512x512 product timed here independently: the peak (the best of ten) is not much below it.
        using var scope = TorchSharp.torch.NewDisposeScope();
        var a = TorchSharp.torch.randn(512, 512);
        var b = TorchSharp.torch.randn(512, 512);
        a.matmul(b);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        using (a.matmul(b)) { }
        double single = 2.0 * 512 * 512 * 512 / clock.Elapsed.TotalSeconds;

        double peak = ModelFlops.MeasuredPeak();

        Assert.True(peak >= single / 3, $"peak {peak / 1e9:0.0} GFLOP/s, one product alone ran at {single / 1e9:0.0}");
        // The ceiling of fp32 FMA hardware: cores x 5 GHz x 64 FLOP per cycle (AVX-512, two FMA units). A peak above it
        // is a unit or a count wrong, not a fast machine. And no CPU of this decade multiplies below 1 GFLOP/s.
        Assert.InRange(peak, 1e9, Environment.ProcessorCount * 5e9 * 64);
    }
}
