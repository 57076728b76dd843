using static TorchSharp.torch;

namespace Pretrain.Data.Augmentations;

/// <summary>
/// Turns a batch of images into one augmented view per sample. The random choices come from
/// <see cref="ViewParameters.Draw"/>, keyed by (seed, step, sample id, view), and every operation in
/// <see cref="ImageOps"/> treats samples independently, so a sample's view is the same whichever rank
/// draws it and whatever else is in its batch.
/// </summary>
public sealed class ViewAugmenter
{
    private readonly AugmentationConfig _config;
    private readonly ulong _seed;

    public ViewAugmenter(AugmentationConfig config, long seed)
    {
        _config = config.Validated();
        _seed = (ulong)seed;
    }

    /// <summary>The parameters of <paramref name="view"/> for each sample id, for (H, W) input images.</summary>
    public ViewParameters[] Parameters(ReadOnlySpan<long> sampleIds, long step, int view, int height, int width)
    {
        var parameters = new ViewParameters[sampleIds.Length];
        for (var i = 0; i < sampleIds.Length; i++)
            parameters[i] = ViewParameters.Draw(_config, _seed, step, sampleIds[i], view, height, width);
        return parameters;
    }

    /// <summary>Views 0 and 1 of <paramref name="images"/> stacked, (2B, C, S, S): the pair SimCLR and BYOL compare.</summary>
    public Tensor BothViews(Tensor images, ReadOnlySpan<long> sampleIds, long step)
    {
        using var first = Augment(images, sampleIds, step, view: 0);
        using var second = Augment(images, sampleIds, step, view: 1);
        return cat([first, second], 0);
    }

    /// <summary>
    /// View <paramref name="view"/> of <paramref name="images"/> (B, C, H, W), uint8 or float in [0, 1],
    /// whose samples are <paramref name="sampleIds"/> at <paramref name="step"/>. Returns float32
    /// (B, C, S, S) in [0, 1], S = <see cref="AugmentationConfig.OutputSize"/>.
    /// </summary>
    public Tensor Augment(Tensor images, ReadOnlySpan<long> sampleIds, long step, int view)
    {
        if (images.dim() != 4)
            throw new ArgumentException($"expected images of shape (B, C, H, W), got ({string.Join(", ", images.shape)})");
        if (images.shape[0] != sampleIds.Length)
            throw new ArgumentException($"{sampleIds.Length} sample ids for a batch of {images.shape[0]}");
        var p = Parameters(sampleIds, step, view, (int)images.shape[2], (int)images.shape[3]);

        using var scope = NewDisposeScope();
        var x = ImageOps.ToUnitFloat(images);                                         // (B, C, H, W)
        x = ImageOps.ResizedCrop(x, p, _config.OutputSize);                           // (B, C, S, S)
        x = ImageOps.FlipWhere(x, [.. p.Select(v => v.Flip)]);
        x = ImageOps.AdjustBrightness(x, [.. p.Select(v => v.Brightness)]);
        x = ImageOps.AdjustContrast(x, [.. p.Select(v => v.Contrast)]);
        x = ImageOps.GrayscaleWhere(x, [.. p.Select(v => v.Grayscale)]);
        x = ImageOps.GaussianBlur(x, [.. p.Select(v => v.BlurSigma)], _config.EffectiveBlurKernelSize);
        x = ImageOps.SolarizeWhere(x, [.. p.Select(v => v.Solarize)], _config.SolarizeThreshold);
        return x.MoveToOuterDisposeScope();
    }
}
