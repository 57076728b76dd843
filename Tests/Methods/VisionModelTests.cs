using Pretrain.Worker.Models.Vision;
using Pretrain.Worker.Training;
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
        Assert.Equal(new long[] { 4, 512 }, features.shape);
        Assert.Equal(512, SmallCnn.FeatureSize(channels: 32, grid: 2));
        Assert.InRange(Parameters(model), 90_000, 110_000);
    }

    [Fact]
    public void SmallCnn_with_twice_the_channels_has_4_times_the_weights_and_a_4x4_grid_gives_16_cells_of_features()
    {
        using var model = new SmallCnn(inputChannels: 1, channels: 64, grid: 4);
        using var images = randn(3, 1, 28, 28);
        using var features = model.forward(images);
        Assert.Equal(new long[] { 3, SmallCnn.FeatureSize(channels: 64, grid: 4) }, features.shape);
        Assert.Equal(4 * 64 * 16, features.shape[1]);
        using var narrow = new SmallCnn(inputChannels: 1);
        // Convolution weights grow with in × out channels, so doubling every stage's width about quadruples them.
        Assert.InRange(Parameters(model) / (double)Parameters(narrow), 3.8, 4.1);
        Assert.Equal(4 * SmallCnn.ForwardFlops(1, 28, 28) - 2 * ModelFlops.Conv2d(1, 32, 3, 28, 28), SmallCnn.ForwardFlops(1, 28, 28, channels: 64), 6);
    }
}
