using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Pretrain.Worker.Models.Vision;

/// <summary>
/// A small convolutional encoder for quick runs on a CPU (~0.1 M parameters): three conv–BN–ReLU
/// stages (32, 64, 128 channels; the last two stride 2), then global average pooling.
/// </summary>
public sealed class SmallCnn : Module<Tensor, Tensor>
{
    private readonly Sequential layers;

    public const int FeatureSize = 128;

    public SmallCnn(int inputChannels) : base(nameof(SmallCnn))
    {
        layers = Sequential(
            Conv2d(inputChannels, 32, kernel_size: 3, padding: 1, bias: false), BatchNorm2d(32), ReLU(),
            Conv2d(32, 64, kernel_size: 3, stride: 2, padding: 1, bias: false), BatchNorm2d(64), ReLU(),
            Conv2d(64, 128, kernel_size: 3, stride: 2, padding: 1, bias: false), BatchNorm2d(128), ReLU());
        RegisterComponents();
    }

    /// <summary>(B, C, H, W) → (B, 128).</summary>
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return layers.forward(x).mean([2L, 3L]).MoveToOuterDisposeScope();    // (B, 128)
    }
}
