using Pretrain.Worker.Models.Layers;
using Pretrain.Worker.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Pretrain.Worker.Models.Vision;

/// <summary>
/// ResNet-18 (He et al. 2016) as a feature encoder, with the small-image stem SimCLR and MoCo use on
/// 28–32 px inputs: a 3x3 stride-1 first convolution and no max-pool, so a 28x28 image is not reduced
/// to 7x7 before the first block. Output: the globally average-pooled 512-d feature (no classifier).
/// </summary>
public sealed class ResNet18 : Module<Tensor, Tensor>
{
    private readonly Conv2d stem;
    private readonly Module<Tensor, Tensor> stemNorm;
    private readonly ModuleList<BasicBlock> blocks;

    public const int FeatureSize = 512;

    /// <summary>Output channels and stride of the eight basic blocks (two per stage).</summary>
    private static readonly (int Channels, int Stride)[] Blocks =
        [(64, 1), (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1)];

    /// <param name="norm">Makes each batch-norm layer from its channel count; null = <see cref="LocalBatchNorm2d"/> (BatchNorm2d's arithmetic and names).</param>
    public ResNet18(int inputChannels, Func<long, Module<Tensor, Tensor>>? norm = null) : base(nameof(ResNet18))
    {
        norm ??= channels => new LocalBatchNorm2d(channels);
        stem = Conv2d(inputChannels, 64, kernel_size: 3, stride: 1, padding: 1, bias: false);
        stemNorm = norm(64);
        var inChannels = 64;
        var list = new List<BasicBlock>();
        foreach (var (channels, stride) in Blocks)
        {
            list.Add(new BasicBlock(inChannels, channels, stride, norm));
            inChannels = channels;
        }
        blocks = new ModuleList<BasicBlock>(list.ToArray());
        RegisterComponents();
    }

    /// <summary>The blocks' marks (<see cref="GradientMark"/>), in forward order; the stem is not covered.</summary>
    public IReadOnlyList<GradientMark> GradientMarks => [.. blocks.Select(b => b.Mark)];

    /// <summary>(B, C, H, W) → (B, 512).</summary>
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = functional.relu(stemNorm.forward(stem.forward(x)));              // (B, 64, H, W)
        foreach (var block in blocks) h = block.forward(h);                       // (B, 512, H/8, W/8)
        return h.mean([2L, 3L]).MoveToOuterDisposeScope();                        // (B, 512)
    }

    /// <summary>Forward FLOPs of the convolutions for one image: stem, two 3x3 per block, 1x1 projection shortcuts.</summary>
    public static double ForwardFlops(int inputChannels, long height, long width)
    {
        var flops = ModelFlops.Conv2d(inputChannels, 64, 3, height, width);
        long inChannels = 64;
        foreach (var (channels, stride) in Blocks)
        {
            (height, width) = (ModelFlops.Strided(height, stride), ModelFlops.Strided(width, stride));
            flops += ModelFlops.Conv2d(inChannels, channels, 3, height, width) + ModelFlops.Conv2d(channels, channels, 3, height, width);
            if (stride != 1 || inChannels != channels)
                flops += ModelFlops.Conv2d(inChannels, channels, 1, height, width);
            inChannels = channels;
        }
        return flops;
    }

    /// <summary>Two 3x3 convolutions with batch norm and a shortcut (1x1 projection when the shape changes).</summary>
    public sealed class BasicBlock : Module<Tensor, Tensor>
    {
        private readonly Conv2d conv1, conv2;
        private readonly Module<Tensor, Tensor> norm1, norm2;
        private readonly Sequential? shortcut;

        public BasicBlock(int inChannels, int outChannels, int stride, Func<long, Module<Tensor, Tensor>> norm) : base(nameof(BasicBlock))
        {
            conv1 = Conv2d(inChannels, outChannels, kernel_size: 3, stride: stride, padding: 1, bias: false);
            norm1 = norm(outChannels);
            conv2 = Conv2d(outChannels, outChannels, kernel_size: 3, stride: 1, padding: 1, bias: false);
            norm2 = norm(outChannels);
            if (stride != 1 || inChannels != outChannels)
                shortcut = Sequential(Conv2d(inChannels, outChannels, kernel_size: 1, stride: stride, bias: false), norm(outChannels));
            RegisterComponents();
            Mark = new GradientMark(parameters());
        }

        /// <summary>The block's input: once backward is back there, the block's parameters have their whole gradient.</summary>
        public GradientMark Mark { get; }

        public override Tensor forward(Tensor x)
        {
            x = Mark.Pass(x);
            var h = functional.relu(norm1.forward(conv1.forward(x)));
            h = norm2.forward(conv2.forward(h));
            return functional.relu(h + (shortcut is null ? x : shortcut.forward(x)));
        }
    }
}
