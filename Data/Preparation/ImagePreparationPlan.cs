using Pretrain.Data.Images;
using Pretrain.Data.Shards;

namespace Pretrain.Data.Preparation;

/// <summary>
/// Image datasets to uint8 CHW image shards with labels (evaluation only). One task writes one shard of
/// max(1, ShardBytes / image bytes) consecutive images of one split (64 MiB: 85,598 Fashion-MNIST
/// images, so each of its splits is one shard). Splits are the dataset's own (Fashion-MNIST and CIFAR-10
/// train/test; an image folder's train/validation from ValidationFraction and Seed). A task's output
/// depends only on the spec and the inputs, so running it twice writes byte-identical shards.
/// Progress reports the task's input bytes done so far (cumulative).
/// </summary>
public sealed class ImagePreparationPlan : IPreparationPlan
{
    private const int ProgressEvery = 1024; // images between progress reports
    private readonly ImageDataset dataset;
    private readonly long imagesPerShard;
    private readonly Dictionary<string, (ImageSplit Split, long Start, long Count)> slices = [];

    private ImagePreparationPlan(PrepareSpec spec, ImageDataset dataset)
    {
        if (spec.ShardBytes <= 0)
            throw new ArgumentException($"prepare: ShardBytes must be positive, got {spec.ShardBytes}");
        OutputDirectory = spec.Output;
        this.dataset = dataset;
        imagesPerShard = Math.Max(1, spec.ShardBytes / dataset.ImageBytes);
        var tasks = new List<PreparationTask>();
        foreach (var split in dataset.Splits)
            for (long start = 0, shard = 0; start < split.Count; start += imagesPerShard, shard++)
            {
                var count = Math.Min(imagesPerShard, split.Count - start);
                var id = $"{split.Name}-{shard:D5}";
                slices[id] = (split, start, count);
                tasks.Add(new PreparationTask(id, $"{split.Name} shard {shard} (images {start}-{start + count - 1})", split.InputBytes(start, count)));
            }
        Tasks = tasks;
    }

    public string OutputDirectory { get; }
    public IReadOnlyList<PreparationTask> Tasks { get; }

    public static IPreparationPlan Create(PrepareSpec spec) => new ImagePreparationPlan(spec, spec.Kind switch
    {
        "fashion-mnist" => FashionMnist.Open(spec.Inputs),
        "cifar10" => Cifar10.Open(spec.Inputs),
        "images" => ImageFolder.Open(spec.Inputs, spec.ValidationFraction, spec.Seed),
        _ => throw new InvalidDataException($"prepare: '{spec.Kind}' is not an image dataset; expected fashion-mnist, cifar10 or images"),
    });

    public static string ShardFile(PreparationTask task) => $"{task.Id}.shard";

    public bool IsDone(PreparationTask task)
    {
        var path = Path.Combine(OutputDirectory, ShardFile(task));
        if (!File.Exists(path))
            return false;
        try
        {
            using var reader = ShardReader.Open(path, verify: true);
            return reader.Count == slices[task.Id].Count;
        }
        catch (InvalidDataException)
        {
            return false; // damaged: the task runs again and replaces it atomically
        }
    }

    public void Run(PreparationTask task, IProgress<long>? bytesDone, CancellationToken ct)
    {
        var (split, start, count) = slices.TryGetValue(task.Id, out var slice) ? slice
            : throw new ArgumentException($"prepare: no task '{task.Id}' in this plan");
        Directory.CreateDirectory(OutputDirectory);
        var layout = ShardLayout.Images(dataset.Channels, dataset.Height, dataset.Width, dataset.HasLabels);
        using var writer = new ShardWriter(Path.Combine(OutputDirectory, ShardFile(task)), layout);
        long done = 0;
        split.Read(start, count, (chw, label) =>
        {
            writer.Append(chw, dataset.HasLabels ? label : null);
            if (++done % ProgressEvery == 0)
                bytesDone?.Report(split.InputBytes(start, done));
        }, ct);
        writer.Complete();
        bytesDone?.Report(task.Bytes);
    }

    public void Finish()
    {
        var splits = new Dictionary<string, ShardSplit>();
        foreach (var split in dataset.Splits)
        {
            var entries = Tasks.Where(t => slices[t.Id].Split == split).Select(Entry).ToList();
            splits[split.Name] = new ShardSplit(split.Count, entries);
        }
        new ShardIndex(ShardIndex.CurrentVersion, "images", "uint8", splits,
            Image: new ImageIndexInfo(dataset.Channels, dataset.Height, dataset.Width, dataset.LabelNames),
            Source: dataset.Source).Save(OutputDirectory);
    }

    private ShardEntry Entry(PreparationTask task)
    {
        var path = Path.Combine(OutputDirectory, ShardFile(task));
        if (!File.Exists(path))
            throw new InvalidOperationException($"prepare: {path} is missing: task {task.Id} has not run; run every task before Finish");
        using var reader = ShardReader.Open(path, verify: false); // verified when the task ran and again by IsDone
        return new ShardEntry(ShardFile(task), reader.Count, reader.FileBytes, ShardEntry.FormatChecksum(reader.Checksum));
    }
}
