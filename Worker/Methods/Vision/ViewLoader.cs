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

    /// <param name="views">1: view 0 of each image (n, C, S, S); 2: views 0 and 1 stacked (2n, C, S, S).</param>
    public ViewLoader(string directory, int capacity, ViewAugmenter augmenter, int views)
    {
        if (views is not (1 or 2)) throw new ArgumentOutOfRangeException(nameof(views), views, "1 or 2 views");
        _images = new ImageBatch(directory, "train", capacity);
        _prefetcher = new Prefetcher<Tensor>((step, ids) =>
        {
            using var scope = NewDisposeScope();   // on whichever thread makes it; the views leave every scope
            using var images = _images.Load(ids);
            var made = views == 2 ? augmenter.BothViews(images, ids, step) : augmenter.Augment(images, ids, step, view: 0);
            return made.DetachFromDisposeScope();
        });
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
