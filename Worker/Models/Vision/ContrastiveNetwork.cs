using Pretrain.Shared.Recipes;
using Pretrain.Worker.Models.Layers;
using Pretrain.Worker.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Pretrain.Worker.Models.Vision;

/// <summary>
/// The network of SimCLR, MoCo v2 and BYOL: an image encoder (whose pooled output is the representation that
/// evaluation uses) followed by an MLP projection head (whose output the loss sees). SimCLR's and BYOL's
/// head is Linear–BN–ReLU–Linear; MoCo v2's Linear–ReLU–Linear. Parameter names: <c>encoder.*</c> and
/// <c>head.*</c>.
/// </summary>
public sealed class ContrastiveNetwork : Module<Tensor, Tensor>
{
    private readonly Module<Tensor, Tensor> encoder;
    private readonly Sequential head;
    private readonly GradientMark headMark;      // the head's input: backward is done with the head there

    /// <summary>What each recipe encoder is: how to build it, its feature width, its forward FLOPs per image.</summary>
    private sealed record EncoderKind(
        Func<int, Func<long, Module<Tensor, Tensor>>?, Module<Tensor, Tensor>> Create, int FeatureSize, Func<int, long, long, double> ForwardFlops);

    private static EncoderKind Kind(VisionModel shape) => shape.Encoder switch
    {
        "small-cnn" => new((input, norm) => new SmallCnn(input, norm, shape.Channels, shape.FeatureGrid),
            SmallCnn.FeatureSize(shape.Channels, shape.FeatureGrid), (input, h, w) => SmallCnn.ForwardFlops(input, h, w, shape.Channels)),
        "resnet18" => new((input, norm) => new ResNet18(input, norm), ResNet18.FeatureSize, ResNet18.ForwardFlops),
        var other => throw new ArgumentException($"unknown encoder '{other}'"),
    };

    /// <summary>Width of the representation (the encoder's output).</summary>
    public int FeatureSize { get; }

    /// <param name="norm">Makes the encoder's batch-norm layers (and the head's, as (B, C, 1, 1)); null = <see cref="LocalBatchNorm2d"/>.</param>
    public ContrastiveNetwork(VisionModel shape, int inputChannels, bool headBatchNorm, Func<long, Module<Tensor, Tensor>>? norm = null)
        : base(nameof(ContrastiveNetwork))
    {
        var kind = Kind(shape);
        (encoder, FeatureSize) = (kind.Create(inputChannels, norm), kind.FeatureSize);
        head = Mlp(FeatureSize, shape.ProjectionHidden, shape.ProjectionDim, headBatchNorm, norm);
        RegisterComponents();
        headMark = new GradientMark(head.parameters());
    }

    /// <summary>
    /// Where backward completes groups of parameters (<see cref="GradientMark"/>), in forward order: ResNet-18's blocks, then
    /// the head. The small CNN's few parameters fit one bucket, so its stages carry none.
    /// </summary>
    public IReadOnlyList<GradientMark> GradientMarks => encoder is ResNet18 resnet ? resnet.GradientMarks.Append(headMark).ToArray() : new[] { headMark };

    /// <summary>
    /// An MLP on (B, C) features, Linear–BN–ReLU–Linear or, without <paramref name="batchNorm"/>, Linear–ReLU–Linear:
    /// the projection head above, and BYOL's predictor, which has the same shape. With BN the first Linear has no
    /// bias (BN's shift takes its place). Layers are made in order, so a seeded build draws the same weights.
    /// </summary>
    /// <param name="norm">Makes the batch-norm layer, as (B, C, 1, 1); null = <see cref="LocalBatchNorm2d"/>.</param>
    public static Sequential Mlp(long input, long hidden, long output, bool batchNorm, Func<long, Module<Tensor, Tensor>>? norm = null)
    {
        var layers = new List<Module<Tensor, Tensor>> { Linear(input, hidden, hasBias: !batchNorm) };
        if (batchNorm)
            layers.Add(new FlatNorm(norm?.Invoke(hidden) ?? new LocalBatchNorm2d(hidden)));
        layers.Add(ReLU());
        layers.Add(Linear(hidden, output));
        return Sequential(layers);
    }

    /// <summary>Forward FLOPs of encoder and head for one image of <paramref name="height"/> × <paramref name="width"/> (convolutions and dense layers).</summary>
    public static double ForwardFlops(VisionModel shape, int inputChannels, long height, long width)
    {
        var kind = Kind(shape);
        return kind.ForwardFlops(inputChannels, height, width)
               + ModelFlops.Linear(kind.FeatureSize, shape.ProjectionHidden) + ModelFlops.Linear(shape.ProjectionHidden, shape.ProjectionDim);
    }

    /// <summary>(B, C, H, W) → projection (B, projection_dim).</summary>
    public override Tensor forward(Tensor images)
    {
        using var scope = NewDisposeScope();
        return head.forward(headMark.Pass(encoder.forward(images))).MoveToOuterDisposeScope();
    }

    /// <summary>(B, C, H, W) → representation (B, FeatureSize), the encoder's output.</summary>
    public Tensor Features(Tensor images) => encoder.forward(images);

    /// <summary>Batch norm over (B, C) features through a 2-d norm layer, as (B, C, 1, 1): one layer type for both.</summary>
    private sealed class FlatNorm : Module<Tensor, Tensor>
    {
        private readonly Module<Tensor, Tensor> norm;

        public FlatNorm(Module<Tensor, Tensor> norm) : base(nameof(FlatNorm))
        {
            this.norm = norm;
            RegisterComponents();
        }

        public override Tensor forward(Tensor x)
        {
            using var scope = NewDisposeScope();
            return norm.forward(x.view(x.shape[0], x.shape[1], 1, 1)).view(x.shape[0], x.shape[1]).MoveToOuterDisposeScope();
        }
    }
}
