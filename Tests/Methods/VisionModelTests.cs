using Pretrain.Worker.Models.Vision;
using Xunit;
using static TorchSharp.torch;

namespace Pretrain.Tests.Methods;

public class VisionModelTests
{
    static long Parameters(TorchSharp.torch.nn.Module module) => module.parameters().Sum(p => p.numel());

    [Fact]
    public void ResNet18_has_the_standard_backbone_with_a_small_image_stem()
    {
        // torchvision's resnet18 has 11,689,512 parameters: 11,176,512 without its 512x1000 classifier,
        // of which the 7x7x3x64 stem is 9,408. A 3x3 stem has 3*3*3*64 = 1,728 (RGB) or 576 (grey).
        using var rgb = new ResNet18(inputChannels: 3);
        using var grey = new ResNet18(inputChannels: 1);
        Assert.Equal(11_176_512 - 9_408 + 1_728, Parameters(rgb));
        Assert.Equal(11_176_512 - 9_408 + 576, Parameters(grey));
    }

    [Fact]
    public void ResNet18_keeps_28_pixel_images_at_full_resolution_until_the_first_downsampling()
    {
        using var model = new ResNet18(inputChannels: 1);
        model.eval();
        using var images = randn(2, 1, 28, 28);
        using var features = model.forward(images);
        Assert.Equal(new long[] { 2, ResNet18.FeatureSize }, features.shape);
    }

    [Fact]
    public void SmallCnn_encodes_a_batch_to_512_features_on_a_2x2_grid()
    {
        using var model = new SmallCnn(inputChannels: 3);
        using var images = randn(4, 3, 32, 32);
        using var features = model.forward(images);
        Assert.Equal(new long[] { 4, SmallCnn.FeatureSize }, features.shape);
        Assert.InRange(Parameters(model), 90_000, 110_000);
    }
}
