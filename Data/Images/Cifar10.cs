namespace Pretrain.Data.Images;

/// <summary>
/// CIFAR-10's binary version (Krizhevsky 2009): data_batch_1..5.bin (train) and test_batch.bin, each
/// 10,000 records of 1 label byte + 3,072 pixel bytes (1,024 red, then green, then blue, rows of 32) —
/// already CHW, so records copy through unchanged. Class names come from batches.meta.txt when present.
/// Records are read from the files as needed (180 MB in all is not worth holding in memory).
/// </summary>
public static class Cifar10
{
    public const int Size = 32;
    public const int ImageBytes = 3 * Size * Size;
    public const int RecordBytes = 1 + ImageBytes;

    public static readonly IReadOnlyList<string> DefaultLabelNames =
        ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

    /// <summary>Opens the batch files among <paramref name="inputs"/> (files, or folders holding them).</summary>
    public static ImageDataset Open(IReadOnlyList<string> inputs)
    {
        var files = InputFiles.Expand(inputs);
        var train = files.Where(f => Path.GetFileName(f).StartsWith("data_batch_", StringComparison.Ordinal) && f.EndsWith(".bin", StringComparison.Ordinal)).ToList();
        var test = files.Where(f => Path.GetFileName(f) == "test_batch.bin").ToList();
        if (train.Count == 0 || test.Count == 0)
            throw new FileNotFoundException($"cifar10: expected data_batch_*.bin and test_batch.bin among {string.Join(", ", files)}");
        var meta = files.FirstOrDefault(f => Path.GetFileName(f) == "batches.meta.txt");
        var names = meta is null ? DefaultLabelNames
            : File.ReadAllLines(meta).Select(l => l.Trim()).Where(l => l.Length > 0).ToList();
        return new ImageDataset("cifar10", 3, Size, Size, names, [new BatchSplit("train", train), new BatchSplit("test", test)]);
    }

    /// <summary>The records of several batch files, in file order; image i is found by its file's record count.</summary>
    private sealed class BatchSplit(string name, IReadOnlyList<string> files) : ImageSplit(name, files.Sum(RecordCount))
    {
        public override long InputBytes(long start, long count) => count * RecordBytes;

        public override void Read(long start, long count, ImageSink sink, CancellationToken ct)
        {
            var record = new byte[RecordBytes];
            long first = 0; // global id of the current file's first record
            foreach (var file in files)
            {
                var records = RecordCount(file);
                var from = Math.Max(start, first);
                var to = Math.Min(start + count, first + records);
                if (from < to)
                {
                    using var handle = File.OpenHandle(file);
                    for (var i = from; i < to; i++)
                    {
                        ct.ThrowIfCancellationRequested();
                        var offset = (i - first) * RecordBytes;
                        if (RandomAccess.Read(handle, record, offset) != RecordBytes)
                            throw new InvalidDataException($"{file}: offset {offset}: expected a {RecordBytes}-byte record, the file changed while reading");
                        if (record[0] >= 10)
                            throw new InvalidDataException($"{file}: offset {offset}: expected a label 0-9, found {record[0]}");
                        sink(record.AsSpan(1), record[0]);
                    }
                }
                first += records;
            }
        }
    }

    private static long RecordCount(string file)
    {
        var length = new FileInfo(file).Length;
        if (length == 0 || length % RecordBytes != 0)
            throw new InvalidDataException(
                $"{file}: offset {length - length % RecordBytes}: expected whole {RecordBytes}-byte records (1 label + 3x32x32 pixels), the file has {length} bytes");
        return length / RecordBytes;
    }
}
