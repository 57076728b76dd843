namespace Pretrain.Data.Images;

/// <summary>Receives one decoded image: uint8 CHW pixels and its label (-1 when the dataset has none).</summary>
public delegate void ImageSink(ReadOnlySpan<byte> chw, int label);

/// <summary>
/// One split of an image dataset ("train", "test" or "validation"): a fixed number of images of one
/// shape, read in a fixed order, so image i is the same image in every process.
/// </summary>
public abstract class ImageSplit(string name, long count)
{
    public string Name { get; } = name;
    public long Count { get; } = count;

    /// <summary>Input bytes that images [start, start + count) take in the source (progress, throughput).</summary>
    public abstract long InputBytes(long start, long count);

    /// <summary>Hands images [start, start + count) to <paramref name="sink"/>, in order.</summary>
    public abstract void Read(long start, long count, ImageSink sink, CancellationToken ct);
}

/// <summary>
/// An image dataset ready to shard: record shape (CHW, uint8), class names (empty when unlabelled),
/// and its splits as the dataset defines them.
/// </summary>
public sealed record ImageDataset(
    string Source, // "fashion-mnist", "cifar10" or "images"
    int Channels,
    int Height,
    int Width,
    IReadOnlyList<string> LabelNames,
    IReadOnlyList<ImageSplit> Splits)
{
    public bool HasLabels => LabelNames.Count > 0;
    public int ImageBytes => Channels * Height * Width;
}
