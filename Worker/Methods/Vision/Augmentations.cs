using Pretrain.Data.Augmentations;
using Pretrain.Shared.Recipes;

namespace Pretrain.Worker.Methods.Vision;

/// <summary>The recipe's <c>augment:</c> section as the data library's view pipeline, at the images' own size.</summary>
public static class Augmentations
{
    public static ViewAugmenter For(AugmentRecipe a, int imageSize, long seed) => new(new AugmentationConfig
    {
        OutputSize = imageSize,
        CropScaleMin = (float)a.CropScale[0],
        CropScaleMax = (float)a.CropScale[1],
        FlipProbability = (float)a.FlipProbability,
        JitterProbability = (float)a.JitterProbability,
        Brightness = (float)a.Brightness,
        Contrast = (float)a.Contrast,
        GrayscaleProbability = (float)a.GrayscaleProbability,
        BlurProbability = (float)a.BlurProbability,
    }, seed);
}
