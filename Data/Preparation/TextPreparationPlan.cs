namespace Pretrain.Data.Preparation;

/// <summary>Text corpora to packed token shards. (Being built: the text-preparation work of issue 3 replaces this file.)</summary>
public static class TextPreparationPlan
{
    public static IPreparationPlan Create(PrepareSpec spec) =>
        throw new NotSupportedException("text preparation is not built yet");
}
