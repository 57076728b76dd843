using Pretrain.Data.Shards;
using static TorchSharp.torch;

namespace Pretrain.Worker.Methods.Vision;

/// <summary>
/// One split of a prepared image folder, read a batch at a time into a uint8 (B, C, H, W) buffer made
/// once: records are CHW bytes in the shards (docs/FORMATS.md), copied straight from the mapping into
/// the tensor's storage. Labels are read only for evaluation.
/// </summary>
public sealed class ImageBatch : IDisposable
{
    private readonly ShardSet _split;
    private readonly Tensor _images;
    private readonly int _imageBytes;

    public ImageBatch(string directory, string split, int capacity)
    {
        _split = ShardSet.Open(directory, split);
        var image = _split.Index.Image ?? throw new InvalidDataException(
            $"{Path.Combine(directory, ShardIndex.FileName)}: not an image folder (no image section); prepare it with `pretrain prepare fashion-mnist|cifar10|images`");
        (Channels, Height, Width, Classes) = (image.Channels, image.Height, image.Width, image.LabelNames.Count);
        _imageBytes = Channels * Height * Width;
        _images = zeros([capacity, Channels, Height, Width], dtype: ScalarType.Byte).DetachFromDisposeScope();
    }

    public int Channels { get; }
    public int Height { get; }
    public int Width { get; }
    public int Classes { get; }
    public long Count => _split.Count;

    /// <summary>
    /// Loads <paramref name="ids"/> into the buffer and returns a view of its first ids.Length images,
    /// (n, C, H, W) uint8, valid until the next Load; the caller disposes the view.
    /// </summary>
    public Tensor Load(ReadOnlySpan<long> ids)
    {
        if (ids.Length > _images.shape[0])
            throw new ArgumentException($"{ids.Length} images do not fit a batch of {_images.shape[0]}");
        var bytes = _images.bytes;
        for (var i = 0; i < ids.Length; i++)
        {
            var record = _split.Record<byte>(ids[i]);
            if (record.Length != _imageBytes)
                throw new InvalidDataException($"split '{_split.Split}' sample {ids[i]}: {record.Length} bytes, expected {Channels}x{Height}x{Width} = {_imageBytes}");
            record.CopyTo(bytes.Slice(i * _imageBytes, _imageBytes));
        }
        return _images.narrow(0, 0, ids.Length);
    }

    /// <summary>Labels of <paramref name="ids"/> as int64 (n).</summary>
    public Tensor Labels(ReadOnlySpan<long> ids)
    {
        var labels = new long[ids.Length];
        for (var i = 0; i < ids.Length; i++)
            labels[i] = _split.Label(ids[i]);
        return tensor(labels);
    }

    public void Dispose()
    {
        _images.Dispose();
        _split.Dispose();
    }
}
