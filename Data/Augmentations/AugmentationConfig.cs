namespace Pretrain.Data.Augmentations;

/// <summary>
/// One view's augmentation pipeline, SimCLR-style (Chen et al. 2020, appendix A): random resized crop,
/// horizontal flip, colour jitter, random grayscale, Gaussian blur, solarize — applied in that order.
/// Defaults are SimCLR's ImageNet values; BYOL's second view sets <see cref="SolarizeProbability"/> 0.2
/// and <see cref="BlurProbability"/> 0.1.
/// </summary>
public sealed record AugmentationConfig
{
    /// <summary>Height and width of the output view in pixels (224 for ImageNet; 28 for Fashion-MNIST).</summary>
    public int OutputSize { get; init; } = 224;

    /// <summary>Crop area as a fraction of the image, [min, max] (torchvision: 0.08–1).</summary>
    public float CropScaleMin { get; init; } = 0.08f;
    public float CropScaleMax { get; init; } = 1.0f;

    /// <summary>Crop aspect ratio w/h, drawn log-uniformly in [min, max] (torchvision: 3/4–4/3).</summary>
    public float CropRatioMin { get; init; } = 3f / 4f;
    public float CropRatioMax { get; init; } = 4f / 3f;

    /// <summary>Probability of a horizontal flip.</summary>
    public float FlipProbability { get; init; } = 0.5f;

    /// <summary>Probability of colour jitter (SimCLR: 0.8).</summary>
    public float JitterProbability { get; init; } = 0.8f;

    /// <summary>Brightness and contrast factors are drawn in [1 − s, 1 + s] (SimCLR: 0.8·strength, strength 1).</summary>
    public float Brightness { get; init; } = 0.8f;
    public float Contrast { get; init; } = 0.8f;

    /// <summary>Probability of grayscale; only images with 3 channels are affected (SimCLR: 0.2).</summary>
    public float GrayscaleProbability { get; init; } = 0.2f;

    /// <summary>Probability of Gaussian blur (SimCLR: 0.5) and its sigma range in pixels (0.1–2.0).</summary>
    public float BlurProbability { get; init; } = 0.5f;
    public float BlurSigmaMin { get; init; } = 0.1f;
    public float BlurSigmaMax { get; init; } = 2.0f;

    /// <summary>Blur kernel size (odd); 0 means SimCLR's 10% of <see cref="OutputSize"/> made odd (23 at 224, 3 at 28).</summary>
    public int BlurKernelSize { get; init; }

    /// <summary>Probability of solarize (SimCLR: 0; BYOL's second view: 0.2) and its threshold on [0, 1] pixels.</summary>
    public float SolarizeProbability { get; init; }
    public float SolarizeThreshold { get; init; } = 0.5f;

    /// <summary>The blur kernel size in effect: at least 3 and odd.</summary>
    public int EffectiveBlurKernelSize => BlurKernelSize > 0 ? BlurKernelSize | 1 : Math.Max(3, (int)(OutputSize * 0.1) | 1);

    /// <summary>Throws when a value is out of its range; names the field.</summary>
    public AugmentationConfig Validated()
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(OutputSize, 1, nameof(OutputSize));
        if (!(CropScaleMin > 0 && CropScaleMin <= CropScaleMax && CropScaleMax <= 1))
            throw new ArgumentException($"{nameof(CropScaleMin)}/{nameof(CropScaleMax)} must satisfy 0 < min <= max <= 1");
        if (!(CropRatioMin > 0 && CropRatioMin <= CropRatioMax))
            throw new ArgumentException($"{nameof(CropRatioMin)}/{nameof(CropRatioMax)} must satisfy 0 < min <= max");
        if (!(BlurSigmaMin > 0 && BlurSigmaMin <= BlurSigmaMax))
            throw new ArgumentException($"{nameof(BlurSigmaMin)}/{nameof(BlurSigmaMax)} must satisfy 0 < min <= max");
        foreach (var (name, p) in new[]
                 {
                     (nameof(FlipProbability), FlipProbability), (nameof(JitterProbability), JitterProbability),
                     (nameof(GrayscaleProbability), GrayscaleProbability), (nameof(BlurProbability), BlurProbability),
                     (nameof(SolarizeProbability), SolarizeProbability),
                 })
            if (p is < 0 or > 1)
                throw new ArgumentException($"{name} must be a probability in [0, 1], got {p}");
        return this;
    }
}
