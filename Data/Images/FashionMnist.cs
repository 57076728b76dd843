namespace Pretrain.Data.Images;

/// <summary>
/// Fashion-MNIST (Xiao et al. 2017): 60,000 train and 10,000 test 28x28 greyscale images in idx files,
/// gzipped or not, as Debian's dataset-fashion-mnist installs them under /usr/share/datasets/fashion-mnist/.
/// The whole set is 55 MB decoded, so it is read into memory once (~0.5 s) and shards slice it.
/// </summary>
public static class FashionMnist
{
    public static readonly IReadOnlyList<string> LabelNames =
        ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

    /// <summary>Opens the four idx files found among <paramref name="inputs"/> (files, or folders holding them).</summary>
    public static ImageDataset Open(IReadOnlyList<string> inputs)
    {
        var files = InputFiles.Expand(inputs);
        var train = Split("train", Find(files, "train-images"), Find(files, "train-labels"));
        var test = Split("test", Find(files, "t10k-images"), Find(files, "t10k-labels"));
        if (train.Rows != test.Rows || train.Columns != test.Columns)
            throw new InvalidDataException($"fashion-mnist: train images are {train.Rows}x{train.Columns}, test images {test.Rows}x{test.Columns}; expected one size");
        return new ImageDataset("fashion-mnist", 1, train.Rows, train.Columns, LabelNames, [train.Split, test.Split]);
    }

    private static (ImageSplit Split, int Rows, int Columns) Split(string name, string imagesPath, string labelsPath)
    {
        var (count, rows, columns, pixels) = IdxFile.ReadImages(imagesPath);
        var labels = IdxFile.ReadLabels(labelsPath);
        if (labels.Length != count)
            throw new InvalidDataException($"{labelsPath}: offset 4: expected {count} labels to match {imagesPath}, found {labels.Length}");
        return (new InMemorySplit(name, rows * columns, pixels, labels), rows, columns);
    }

    private static string Find(IReadOnlyList<string> files, string prefix) =>
        files.FirstOrDefault(f => Path.GetFileName(f).StartsWith(prefix, StringComparison.Ordinal))
        ?? throw new FileNotFoundException(
            $"fashion-mnist: no {prefix}-idx*-ubyte[.gz] among {string.Join(", ", files)}; expected the four idx files " +
            "(apt-get install dataset-fashion-mnist puts them in /usr/share/datasets/fashion-mnist/)");

    /// <summary>Images already decoded into one array; input bytes are the decoded pixels.</summary>
    private sealed class InMemorySplit(string name, int imageBytes, byte[] pixels, byte[] labels)
        : ImageSplit(name, labels.Length)
    {
        public override long InputBytes(long start, long count) => count * imageBytes;

        public override void Read(long start, long count, ImageSink sink, CancellationToken ct)
        {
            for (var i = start; i < start + count; i++)
            {
                if (i % 4096 == 0)
                    ct.ThrowIfCancellationRequested();
                sink(pixels.AsSpan(checked((int)(i * imageBytes)), imageBytes), labels[i]);
            }
        }
    }
}

/// <summary>Inputs as files: a folder stands for the files directly in it, sorted by name (ordinal).</summary>
public static class InputFiles
{
    public static IReadOnlyList<string> Expand(IReadOnlyList<string> inputs) =>
        inputs.SelectMany<string, string>(input => Directory.Exists(input)
                ? Directory.GetFiles(input).Order(StringComparer.Ordinal)
                : File.Exists(input) ? [input] : throw new FileNotFoundException($"{input}: no such file or folder", input))
            .ToList();
}
