using Pretrain.Data.Augmentations;
using Pretrain.Worker.Training;
using static TorchSharp.torch;

namespace Pretrain.Worker.Methods.Vision;

/// <summary>
/// A vision method's training input for one micro-batch: the augmented views of its images, made one micro-batch ahead
/// on the thread pool (<see cref="Prefetcher{T}"/>) while the current one computes. It reads through a batch buffer of
/// its own, so the method's buffer (evaluation, reproducible shards) is never written from two threads; the views are a
/// function of the step and the sample ids alone (<see cref="ViewAugmenter"/>), so they do not depend on when they are made.
/// </summary>
public sealed class ViewLoader : IDisposable
{
    private readonly ImageBatch _images;
    private readonly Prefetcher<Tensor> _prefetcher;

    /// <summary>
    /// Whether views are made ahead: only with <c>PRETRAIN_PREFETCH=1</c>. Where the ranks' torch threads already fill every
    /// core, as the local launcher sizes them, the thread making ahead takes cores from them and their global batch norm
    /// waits for the slowest: the 2-worker SimCLR demo on 2 cores trained 9% slower with it (583 against 639 samples/s,
    /// docs/BENCHMARKS.md). It pays where cores sit idle beside the step (one worker of one thread on 2 cores: the data
    /// phase went from 15.6 to 0.3 ms a step), as beside an accelerator.
    /// </summary>
    public static bool AheadByDefault { get; } = Environment.GetEnvironmentVariable("PRETRAIN_PREFETCH") == "1";

    /// <param name="views">1: view 0 of each image (n, C, S, S); 2: views 0 and 1 stacked (2n, C, S, S).</param>
    /// <param name="ahead">Make the announced batch ahead (<see cref="AheadByDefault"/> in training).</param>
    public ViewLoader(string directory, int capacity, ViewAugmenter augmenter, int views, bool ahead)
    {
        if (views is not (1 or 2)) throw new ArgumentOutOfRangeException(nameof(views), views, "1 or 2 views");
        _images = new ImageBatch(directory, "train", capacity);
        _prefetcher = new Prefetcher<Tensor>((step, ids) =>
        {
            using var scope = NewDisposeScope();   // on whichever thread makes it; the views leave every scope
            using var images = _images.Load(ids);
            var made = views == 2 ? augmenter.BothViews(images, ids, step) : augmenter.Augment(images, ids, step, view: 0);
            return made.DetachFromDisposeScope();
        }, ahead);
    }

    /// <summary>See <see cref="IPretrainingMethod.PrepareAhead"/>.</summary>
    public void Announce(MicroBatch next) => _prefetcher.Announce(next.Step, next.SampleIds.Span);

    /// <summary>The views of <paramref name="batch"/>, float32 in [0, 1]; the caller disposes them.</summary>
    public Tensor Take(MicroBatch batch) => _prefetcher.Take(batch.Step, batch.SampleIds.Span);

    public void Dispose()
    {
        _prefetcher.Dispose();
        _images.Dispose();
    }
}
