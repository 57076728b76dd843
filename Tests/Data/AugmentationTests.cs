using Pretrain.Data.Augmentations;
using Pretrain.Data.Sampling;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Pretrain.Tests.Data;

public class AugmentationTests
{
    private const int Seed = 17, Size = 16, Channels = 3;

    // Every operation fires often, so the acceptance test exercises all of them.
    private static readonly AugmentationConfig Busy = new()
    {
        OutputSize = 12, GrayscaleProbability = 0.5f, SolarizeProbability = 0.5f, BlurKernelSize = 5,
    };

    // A full-image crop and nothing else: the identity unless a test switches one operation on.
    private static readonly AugmentationConfig Quiet = new()
    {
        OutputSize = Size, CropScaleMin = 1, CropScaleMax = 1, CropRatioMin = 1, CropRatioMax = 1,
        FlipProbability = 0, JitterProbability = 0, GrayscaleProbability = 0, BlurProbability = 0,
    };

    [Fact]
    public void Same_sample_gets_identical_views_on_rank_0_of_1_and_rank_1_of_2()
    {
        using var scope = NewDisposeScope();
        const long step = 3;
        var sampler = new GlobalBatchSampler(Seed, samples: 20, globalBatch: 8);
        var (alone, secondOfTwo) = (new long[8], new long[4]);
        sampler.RankBatch(step, rank: 0, worldSize: 1, alone);
        sampler.RankBatch(step, rank: 1, worldSize: 2, secondOfTwo);
        var augmenter = new ViewAugmenter(Busy, Seed); // each "worker" would build its own; the state is only config and seed

        for (var view = 0; view < 2; view++)
        {
            var one = new ViewAugmenter(Busy, Seed).Augment(Images(alone), alone, step, view);              // (8, 3, 12, 12)
            var two = augmenter.Augment(Images(secondOfTwo), secondOfTwo, step, view);                      // (4, 3, 12, 12)
            for (var i = 0; i < secondOfTwo.Length; i++)
            {
                var j = Array.IndexOf(alone, secondOfTwo[i]);
                Assert.True(j >= 0, $"sample {secondOfTwo[i]} of rank 1 of 2 is not in the global batch");
                var difference = (one[j] - two[i]).abs().max().item<float>();
                Assert.True(difference <= 1e-6f, $"sample {secondOfTwo[i]}, view {view}: views differ by {difference}");
            }
        }
        // The views are not trivially equal: the two views of a sample differ.
        var views = Enumerable.Range(0, 2).Select(v => augmenter.Augment(Images(alone), alone, step, v)).ToArray();
        Assert.True((views[0] - views[1]).abs().max().item<float>() > 0.05f);
    }

    [Fact]
    public void Views_are_deterministic_across_calls_and_depend_on_step_and_view()
    {
        using var scope = NewDisposeScope();
        long[] ids = [5, 9, 2];
        var first = new ViewAugmenter(Busy, Seed).Augment(Images(ids), ids, 4, 0);
        Assert.True(Same(first, new ViewAugmenter(Busy, Seed).Augment(Images(ids), ids, 4, 0)));
        Assert.False(Same(first, new ViewAugmenter(Busy, Seed).Augment(Images(ids), ids, 5, 0)));
        Assert.False(Same(first, new ViewAugmenter(Busy, Seed).Augment(Images(ids), ids, 4, 1)));
        Assert.False(Same(first, new ViewAugmenter(Busy, Seed + 1).Augment(Images(ids), ids, 4, 0)));
    }

    [Fact]
    public void Full_image_crop_with_certain_flip_mirrors_the_image()
    {
        using var scope = NewDisposeScope();
        long[] ids = [0, 1];
        var images = Images(ids);
        var expected = ImageOps.ToUnitFloat(images);
        var kept = new ViewAugmenter(Quiet, Seed).Augment(images, ids, 0, 0);
        var flipped = new ViewAugmenter(Quiet with { FlipProbability = 1 }, Seed).Augment(images, ids, 0, 0);
        Assert.True(kept.allclose(expected, rtol: 0, atol: 1e-6));
        Assert.True(flipped.allclose(expected.flip(3), rtol: 0, atol: 1e-6));
        Assert.False(flipped.allclose(expected, rtol: 0, atol: 0.01));
    }

    [Fact]
    public void Flip_mirrors_only_the_flagged_samples()
    {
        using var scope = NewDisposeScope();
        var x = ImageOps.ToUnitFloat(Images([3, 4]));
        var y = ImageOps.FlipWhere(x, [true, false]);
        Assert.True(Same(y[0], x[0].flip(2)));
        Assert.True(Same(y[1], x[1]));
        Assert.True(Same(y[0, 0, 0, 0], x[0, 0, 0, Size - 1]));
    }

    [Fact]
    public void Solarize_inverts_pixels_at_or_above_the_threshold_only()
    {
        using var scope = NewDisposeScope();
        var x = tensor(new[] { 0.1f, 0.49f, 0.5f, 0.9f, 0.1f, 0.49f, 0.5f, 0.9f }).view(2, 1, 1, 4);
        var y = ImageOps.SolarizeWhere(x, [true, false], threshold: 0.5f);
        Assert.Equal(new[] { 0.1f, 0.49f, 0.5f, 0.1f }, y[0].flatten().data<float>().ToArray(), new ToleranceComparer(1e-6f));
        Assert.Equal(x[1].flatten().data<float>().ToArray(), y[1].flatten().data<float>().ToArray());
    }

    [Fact]
    public void Grayscale_applies_only_to_three_channel_images()
    {
        using var scope = NewDisposeScope();
        var colour = ImageOps.ToUnitFloat(Images([1, 2]));
        var grey = ImageOps.GrayscaleWhere(colour, [true, false]);
        Assert.True(Same(grey[0, 0], grey[0, 1]) && Same(grey[0, 1], grey[0, 2]));
        Assert.True(grey[0, 0].allclose(0.299f * colour[0, 0] + 0.587f * colour[0, 1] + 0.114f * colour[0, 2], rtol: 0, atol: 1e-6));
        Assert.True(Same(grey[1], colour[1]));
        var single = colour.narrow(1, 0, 1);                                  // (2, 1, H, W)
        Assert.True(Same(ImageOps.GrayscaleWhere(single, [true, true]), single));
    }

    [Fact]
    public void Blur_with_sigma_0_is_the_identity_and_otherwise_smooths()
    {
        using var scope = NewDisposeScope();
        var x = ImageOps.ToUnitFloat(Images([6, 7]));
        var y = ImageOps.GaussianBlur(x, [0f, 1.5f], kernelSize: 5);
        Assert.True(Same(y[0], x[0]));
        Assert.True(y[1].std().item<float>() < 0.6f * x[1].std().item<float>()); // uniform noise loses most variance
        Assert.Equal(1f, ImageOps.GaussianWeights([0.7f], 5).Sum(), 5);
    }

    [Theory]
    [InlineData(ScalarType.Byte)]
    [InlineData(ScalarType.Float32)]
    public void Outputs_are_float_views_in_the_unit_range(ScalarType input)
    {
        using var scope = NewDisposeScope();
        long[] ids = [10, 11, 12, 13];
        var images = input == ScalarType.Byte ? Images(ids) : ImageOps.ToUnitFloat(Images(ids));
        var config = Busy with { JitterProbability = 1, Brightness = 0.9f, Contrast = 0.9f };
        var y = new ViewAugmenter(config, Seed).Augment(images, ids, 2, 0);
        Assert.Equal(ScalarType.Float32, y.dtype);
        Assert.Equal(new long[] { 4, Channels, 12, 12 }, y.shape);
        Assert.True(y.min().item<float>() >= 0f && y.max().item<float>() <= 1f);
    }

    [Fact]
    public void Crop_parameters_follow_the_scale_and_ratio_ranges()
    {
        var augmenter = new ViewAugmenter(Busy with { CropScaleMin = 0.2f, CropScaleMax = 0.6f }, Seed);
        var ids = Enumerable.Range(0, 2000).Select(i => (long)i).ToArray();
        var p = augmenter.Parameters(ids, 0, 0, 64, 64);
        Assert.All(p, v => Assert.True(v.CropTop + v.CropHeight <= 64 && v.CropLeft + v.CropWidth <= 64));
        Assert.All(p, v => Assert.InRange(v.CropWidth * v.CropHeight / 4096.0, 0.17, 0.64)); // rounding of w, h to pixels
        Assert.All(p, v => Assert.InRange((double)v.CropWidth / v.CropHeight, 0.70, 1.42));
        // Flip ~ Binomial(2000, 0.5): sd 22, 4 sd = 90.
        Assert.InRange(p.Count(v => v.Flip), 1000 - 90, 1000 + 90);
    }

    /// <summary>uint8 (B, 3, 16, 16) images whose pixels are a pure function of the sample id.</summary>
    private static Tensor Images(long[] ids)
    {
        const int pixels = Channels * Size * Size;
        var bytes = new byte[ids.Length * pixels];
        for (var b = 0; b < ids.Length; b++)
            for (var k = 0; k < pixels; k++)
                bytes[b * pixels + k] = (byte)SplitMix64.At((ulong)ids[b], (ulong)k);
        return tensor(bytes, [ids.Length, Channels, Size, Size]);
    }

    private static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>();

    private sealed class ToleranceComparer(float tolerance) : IEqualityComparer<float>
    {
        public bool Equals(float a, float b) => Math.Abs(a - b) <= tolerance;
        public int GetHashCode(float value) => 0;
    }
}
