using Pretrain.Data.Random;

namespace Pretrain.Data.Augmentations;

/// <summary>
/// The random choices of one view of one sample. A pure function of (seed, step, sample id, view) through
/// <see cref="CounterRandom"/>, one stream per view and operation, so a sample gets the same view on
/// whichever rank draws it, and adding an operation later does not shift the draws of the others.
/// </summary>
/// <param name="CropTop">Crop box in input pixels: rows [CropTop, CropTop + CropHeight).</param>
/// <param name="CropLeft">Columns [CropLeft, CropLeft + CropWidth).</param>
/// <param name="Brightness">Brightness factor; 1 leaves the image unchanged.</param>
/// <param name="Contrast">Contrast factor; 1 leaves the image unchanged.</param>
/// <param name="BlurSigma">Gaussian blur sigma in pixels; 0 means no blur.</param>
public readonly record struct ViewParameters(
    int CropTop, int CropLeft, int CropHeight, int CropWidth,
    bool Flip, float Brightness, float Contrast, bool Grayscale, float BlurSigma, bool Solarize)
{
    private const int CropAttempts = 10; // torchvision's RandomResizedCrop tries 10 boxes, then falls back to a centre crop
    private const uint StreamsPerView = 8;

    private enum Operation : uint { Crop, Flip, Jitter, Grayscale, Blur, Solarize }

    /// <summary>Draws the parameters of view <paramref name="view"/> of sample <paramref name="sampleId"/> at <paramref name="step"/>.</summary>
    public static ViewParameters Draw(AugmentationConfig config, ulong seed, long step, long sampleId, int view, int height, int width)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(view);
        var rng = new CounterRandom(seed, step, sampleId);
        CounterRandom Stream(Operation op) => rng.WithStream((uint)view * StreamsPerView + (uint)op);

        var (top, left, h, w) = Crop(config, Stream(Operation.Crop), height, width);
        var flip = Stream(Operation.Flip).Chance(0, config.FlipProbability);

        var jitter = Stream(Operation.Jitter);
        var jittered = jitter.Chance(0, config.JitterProbability);
        var brightness = jittered ? jitter.Uniform(1, Math.Max(0, 1 - config.Brightness), 1 + config.Brightness) : 1f;
        var contrast = jittered ? jitter.Uniform(2, Math.Max(0, 1 - config.Contrast), 1 + config.Contrast) : 1f;

        var grayscale = Stream(Operation.Grayscale).Chance(0, config.GrayscaleProbability);
        var blur = Stream(Operation.Blur);
        var sigma = blur.Chance(0, config.BlurProbability) ? blur.Uniform(1, config.BlurSigmaMin, config.BlurSigmaMax) : 0f;
        var solarize = Stream(Operation.Solarize).Chance(0, config.SolarizeProbability);
        return new ViewParameters(top, left, h, w, flip, brightness, contrast, grayscale, sigma, solarize);
    }

    /// <summary>
    /// torchvision's RandomResizedCrop.get_params: area fraction uniform in the scale range, aspect ratio
    /// log-uniform; attempt <c>a</c> uses draws 4a … 4a+3 (one Philox block).
    /// </summary>
    private static (int Top, int Left, int Height, int Width) Crop(AugmentationConfig config, CounterRandom rng, int height, int width)
    {
        var area = (double)height * width;
        double logMin = Math.Log(config.CropRatioMin), logMax = Math.Log(config.CropRatioMax);
        for (var attempt = 0; attempt < CropAttempts; attempt++)
        {
            var draw = 4L * attempt;
            var target = area * rng.Uniform(draw, config.CropScaleMin, config.CropScaleMax);
            var ratio = Math.Exp(logMin + (logMax - logMin) * rng.Uniform(draw + 1));
            var w = (int)Math.Round(Math.Sqrt(target * ratio));
            var h = (int)Math.Round(Math.Sqrt(target / ratio));
            if (w > 0 && w <= width && h > 0 && h <= height)
                return (rng.Integer(draw + 2, 0, height - h + 1), rng.Integer(draw + 3, 0, width - w + 1), h, w);
        }
        // Fallback: the largest centred box whose ratio is within range.
        var inRatio = (double)width / height;
        var (ch, cw) = inRatio < config.CropRatioMin ? ((int)Math.Round(width / config.CropRatioMin), width)
            : inRatio > config.CropRatioMax ? (height, (int)Math.Round(height * config.CropRatioMax))
            : (height, width);
        return ((height - ch) / 2, (width - cw) / 2, ch, cw);
    }
}
