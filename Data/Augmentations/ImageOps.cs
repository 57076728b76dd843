using Pretrain.Data.Torch;
using TorchSharp;
using static TorchSharp.torch;

namespace Pretrain.Data.Augmentations;

/// <summary>
/// Batched image operations on float images in [0, 1], shape (B, C, H, W), each with per-sample
/// parameters. Every operation is elementwise or a per-sample reduction, never a matmul or a
/// convolution whose kernel choice depends on B, so a sample's result does not depend on the rest of
/// its batch (the multi-rank acceptance test relies on that). Each call owns a dispose scope and
/// returns one new tensor. Every number passed to a tensor op is an explicit Scalar disposed by the call: an
/// implicit one is freed only by the finalizer, which can run during the native call that uses it (TorchSharp
/// 0.107 keeps no reference), and libtorch then reads a freed Scalar ("Unknown scalar type").
/// </summary>
public static class ImageOps
{
    // ITU-R BT.601 luma weights, as torchvision's rgb_to_grayscale.
    private const float LumaR = 0.299f, LumaG = 0.587f, LumaB = 0.114f;

    /// <summary>uint8 (0–255) or float images → float32 in [0, 1].</summary>
    public static Tensor ToUnitFloat(Tensor images)
    {
        using var scope = NewDisposeScope();
        using var maxByte = 255f.ToScalar();
        var x = images.dtype == ScalarType.Byte ? images.to_type(ScalarType.Float32).div(maxByte) : images.to_type(ScalarType.Float32).clone();
        return x.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Crops box b of sample b and resizes it bilinearly to size × size, by grid_sample on a per-sample
    /// affine grid (align_corners false: pixel centres at (2k+1)/n − 1). No antialiasing, unlike
    /// torchvision's tensor resize; SimCLR crops are mostly upscaled, where it does not matter.
    /// </summary>
    public static Tensor ResizedCrop(Tensor images, IReadOnlyList<ViewParameters> boxes, int size)
    {
        using var scope = NewDisposeScope();
        var (b, h, w) = (images.shape[0], images.shape[2], images.shape[3]);
        CheckBatch(b, boxes.Count);
        var (sx, tx, sy, ty) = (new float[b], new float[b], new float[b], new float[b]);
        for (var i = 0; i < b; i++)
        {
            var p = boxes[i];
            // Output x in [-1, 1] → input x = sx·x + tx, mapping the output's edges onto the box's edges.
            sx[i] = (float)p.CropWidth / w;
            tx[i] = (2f * p.CropLeft + p.CropWidth) / w - 1;
            sy[i] = (float)p.CropHeight / h;
            ty[i] = (2f * p.CropTop + p.CropHeight) / h - 1;
        }
        var centres = tensor(Enumerable.Range(0, size).Select(k => (2f * k + 1) / size - 1).ToArray()); // (S,)
        var gx = tensor(sx).view(b, 1, 1) * centres.view(1, 1, size) + tensor(tx).view(b, 1, 1);         // (B, 1, S)
        var gy = tensor(sy).view(b, 1, 1) * centres.view(1, size, 1) + tensor(ty).view(b, 1, 1);         // (B, S, 1)
        var grid = stack([gx.expand(b, size, size), gy.expand(b, size, size)], dim: 3);                  // (B, S, S, 2)
        var output = nn.functional.grid_sample(images, grid, GridSampleMode.Bilinear, GridSamplePaddingMode.Border, align_corners: false);
        return output.MoveToOuterDisposeScope();                                                          // (B, C, S, S)
    }

    /// <summary>Mirrors left–right the samples whose flag is set.</summary>
    public static Tensor FlipWhere(Tensor images, bool[] flip)
    {
        using var scope = NewDisposeScope();
        return where(Mask(images, flip), images.flip(3), images).MoveToOuterDisposeScope();
    }

    /// <summary>x·f clamped to [0, 1]; f = 1 leaves a sample unchanged.</summary>
    public static Tensor AdjustBrightness(Tensor images, float[] factors)
    {
        using var scope = NewDisposeScope();
        using var zero = 0f.ToScalar();
        using var one = 1f.ToScalar();
        return (images * Column(images, factors)).clamp(zero, one).MoveToOuterDisposeScope();
    }

    /// <summary>Blends with the sample's mean grey level: f·x + (1 − f)·mean, clamped (torchvision's adjust_contrast).</summary>
    public static Tensor AdjustContrast(Tensor images, float[] factors)
    {
        using var scope = NewDisposeScope();
        using var zero = 0f.ToScalar();
        using var one = 1f.ToScalar();
        var mean = Luma(images).mean([1, 2, 3], keepdim: true); // (B, 1, 1, 1)
        var f = Column(images, factors);
        return (f * images + f.negative().add_(one, HeldScalars.One) * mean).clamp(zero, one).MoveToOuterDisposeScope(); // 1 − f as −f + 1, what the operator computed
    }

    /// <summary>Replaces the flagged samples by their luma in all three channels; other channel counts pass through.</summary>
    public static Tensor GrayscaleWhere(Tensor images, bool[] grayscale)
    {
        using var scope = NewDisposeScope();
        if (images.shape[1] != 3)
            return images.clone().MoveToOuterDisposeScope(); // no colour to remove (Fashion-MNIST)
        return where(Mask(images, grayscale), Luma(images).expand_as(images), images).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Separable Gaussian blur with a per-sample sigma (0 = identity) and a fixed odd kernel size,
    /// reflect-padded as torchvision's gaussian_blur. Each pass sums k shifted copies weighted per
    /// sample: k = 23 at 224 px costs 46 multiply-adds per pixel, the same as a separable convolution.
    /// </summary>
    public static Tensor GaussianBlur(Tensor images, float[] sigmas, int kernelSize)
    {
        using var scope = NewDisposeScope();
        var (b, h, w) = (images.shape[0], images.shape[2], images.shape[3]);
        CheckBatch(b, sigmas.Length);
        if (kernelSize < 1 || kernelSize % 2 == 0)
            throw new ArgumentException($"blur kernel size must be odd and positive, got {kernelSize}");
        var radius = kernelSize / 2;
        if (radius >= h || radius >= w)
            throw new ArgumentException($"blur kernel {kernelSize} is too large for {h}x{w} images (reflect padding needs radius < size)");
        var weights = tensor(GaussianWeights(sigmas, kernelSize)).view(b, kernelSize); // (B, k)
        var x = images;
        foreach (var dim in new long[] { 3, 2 }) // width, then height
        {
            long[] pad = dim == 3 ? [radius, radius, 0, 0] : [0, 0, radius, radius];
            var padded = nn.functional.pad(x, pad, PaddingModes.Reflect); // (B, C, H(+2r), W(+2r))
            var length = dim == 3 ? w : h;
            var sum = zeros_like(x);
            for (var d = 0; d < kernelSize; d++)
                sum += weights.narrow(1, d, 1).view(b, 1, 1, 1) * padded.narrow(dim, d, length);
            x = sum;
        }
        return x.MoveToOuterDisposeScope();
    }

    /// <summary>Inverts pixels at or above the threshold in the flagged samples: x ≥ t → 1 − x (torchvision's solarize).</summary>
    public static Tensor SolarizeWhere(Tensor images, bool[] solarize, float threshold)
    {
        using var scope = NewDisposeScope();
        using var at = threshold.ToScalar();
        using var one = 1f.ToScalar();
        var invert = Mask(images, solarize).logical_and(images.ge(at));
        return where(invert, images.negative().add_(one, HeldScalars.One), images).MoveToOuterDisposeScope(); // 1 − x as −x + 1, what the operator computed
    }

    /// <summary>Normalised 1-D Gaussian kernels, row b for sigma b; sigma 0 gives the identity kernel (a centred 1).</summary>
    public static float[] GaussianWeights(float[] sigmas, int kernelSize)
    {
        var radius = kernelSize / 2;
        var weights = new float[sigmas.Length * kernelSize];
        for (var b = 0; b < sigmas.Length; b++)
        {
            var row = weights.AsSpan(b * kernelSize, kernelSize);
            if (sigmas[b] <= 0)
            {
                row[radius] = 1f;
                continue;
            }
            var total = 0.0;
            for (var d = -radius; d <= radius; d++)
                total += Math.Exp(-d * d / (2.0 * sigmas[b] * sigmas[b]));
            for (var d = -radius; d <= radius; d++)
                row[d + radius] = (float)(Math.Exp(-d * d / (2.0 * sigmas[b] * sigmas[b])) / total);
        }
        return weights;
    }

    /// <summary>(B, 1, H, W) luma for 3 channels, the image itself for 1.</summary>
    private static Tensor Luma(Tensor images)
    {
        if (images.shape[1] != 3)
            return images.mean([1], keepdim: true);
        using var r = LumaR.ToScalar();
        using var g = LumaG.ToScalar();
        using var b = LumaB.ToScalar();
        return images.narrow(1, 0, 1).mul(r) + images.narrow(1, 1, 1).mul(g) + images.narrow(1, 2, 1).mul(b);
    }

    private static Tensor Column(Tensor images, float[] values)
    {
        CheckBatch(images.shape[0], values.Length);
        return tensor(values).view(values.Length, 1, 1, 1); // (B, 1, 1, 1)
    }

    private static Tensor Mask(Tensor images, bool[] flags)
    {
        CheckBatch(images.shape[0], flags.Length);
        return tensor(flags).view(flags.Length, 1, 1, 1); // (B, 1, 1, 1)
    }

    private static void CheckBatch(long batch, int parameters)
    {
        if (batch != parameters)
            throw new ArgumentException($"{parameters} per-sample parameters for a batch of {batch}");
    }
}
