namespace Pretrain.Data.Preparation;

/// <summary>Image datasets to uint8 image shards. (Being built: the image work of issue 3 replaces this file.)</summary>
public static class ImagePreparationPlan
{
    public static IPreparationPlan Create(PrepareSpec spec) =>
        throw new NotSupportedException("image preparation is not built yet");
}
