using Pretrain.Worker.Models.Layers;
using Pretrain.Worker.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Pretrain.Worker.Models.Vision;

/// <summary>
/// A small convolutional encoder for quick runs on a CPU: three conv–BN–ReLU stages (c, 2c, 4c channels,
/// c = 32 by default, ~0.1 M parameters; the last two stride 2), then average pooling to a g × g grid
/// (g = 2 by default), flattened to 4c·g² features. Not global pooling: on 28–32 px images the coarse
/// layout (top/bottom, left/right) is much of what tells a shirt from a bag, and a 1×1 pool throws it
/// away — a linear probe on the 128-d globally pooled features of a short SimCLR run trailed one on raw
/// pixels (79% vs 84% on Fashion-MNIST) where the 2×2 grid keeps it. A finer grid gives the linear probe
/// more of the layout for no extra convolution (docs/RESULTS.md, ablations).
/// </summary>
public sealed class SmallCnn : Module<Tensor, Tensor>
{
    private readonly Sequential layers;
    private readonly long grid;

    /// <summary>Width of the features: 4c channels on a g × g grid.</summary>
    public static int FeatureSize(int channels, int grid) => 4 * channels * grid * grid;

    private static (int Channels, int Stride)[] Stages(int channels) => [(channels, 1), (2 * channels, 2), (4 * channels, 2)];

    /// <param name="norm">Makes each batch-norm layer from its channel count; null = <see cref="LocalBatchNorm2d"/> (BatchNorm2d's arithmetic and names).</param>
    public SmallCnn(int inputChannels, Func<long, Module<Tensor, Tensor>>? norm = null, int channels = 32, int grid = 2) : base(nameof(SmallCnn))
    {
        norm ??= width => new LocalBatchNorm2d(width);
        this.grid = grid;
        var stages = new List<Module<Tensor, Tensor>>();
        var inChannels = inputChannels;
        foreach (var (width, stride) in Stages(channels))
        {
            stages.AddRange([Conv2d(inChannels, width, kernel_size: 3, stride: stride, padding: 1, bias: false), norm(width), ReLU()]);
            inChannels = width;
        }
        layers = Sequential(stages);
        RegisterComponents();
    }

    /// <summary>Forward FLOPs of the convolutions for one image (BN, ReLU and pooling are elementwise and not counted).</summary>
    public static double ForwardFlops(int inputChannels, long height, long width, int channels = 32)
    {
        double flops = 0;
        long inChannels = inputChannels;
        foreach (var (outChannels, stride) in Stages(channels))
        {
            (height, width) = (ModelFlops.Strided(height, stride), ModelFlops.Strided(width, stride));
            flops += ModelFlops.Conv2d(inChannels, outChannels, 3, height, width);
            inChannels = outChannels;
        }
        return flops;
    }

    /// <summary>(B, C, H, W) → (B, 4c·g²).</summary>
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return functional.adaptive_avg_pool2d(layers.forward(x), [grid, grid]).flatten(1).MoveToOuterDisposeScope(); // (B, 4c·g·g)
    }
}
