using Pretrain.Worker.Collectives;
using Pretrain.Worker.Evaluation;
using Pretrain.Worker.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Pretrain.Worker.Methods.Vision;

/// <summary>
/// Frozen features of a whole split, computed by all ranks together: rank r encodes the r-th contiguous
/// share of the ids (the last share padded by repeating the last id, so all shares are equal for the
/// all-gather) and every rank ends with the features of every sample. The kNN monitor and the linear
/// probe (<c>pretrain eval</c>) both start here.
/// </summary>
public static class FrozenFeatures
{
    public const int ChunkSize = 500;

    /// <summary>
    /// Features (N, d) float32 and labels (N) int64 of the first <paramref name="limit"/> samples of
    /// <paramref name="split"/> (all when 0); the caller disposes both.
    /// </summary>
    public static async Task<(Tensor Features, Tensor Labels)> OfSplitAsync(ImageBatch split, Func<Tensor, Tensor> encode,
        int featureSize, ICommunicator? collectives, CancellationToken ct, long limit = 0)
    {
        int world = collectives?.WorldSize ?? 1, rank = collectives?.Rank ?? 0;
        long count = limit > 0 ? Math.Min(limit, split.Count) : split.Count, share = (count + world - 1) / world;
        var ids = Enumerable.Range(0, (int)share).Select(i => Math.Min(rank * share + i, count - 1)).ToArray();
        var mine = empty(share, featureSize, dtype: float32).DetachFromDisposeScope();
        using var maxByte = 255.ToScalar();   // explicit: an implicit Scalar may be finalized mid-call (see GlobalBatchNorm2d)
        using (var noGrad = no_grad())
            for (long start = 0; start < share; start += ChunkSize)
            {
                ct.ThrowIfCancellationRequested();
                using var scope = NewDisposeScope();
                var chunk = ids.AsSpan((int)start, (int)Math.Min(ChunkSize, share - start));
                using var images = split.Load(chunk);
                var x = images.to_type(float32).div_(maxByte);
                mine.narrow(0, start, chunk.Length).copy_(encode(x));
            }
        var labels = split.Labels(Enumerable.Range(0, (int)count).Select(i => (long)i).ToArray()).DetachFromDisposeScope();
        if (world == 1)
            return (mine, labels);
        using (mine)
        {
            using var all = empty(world * share, featureSize, dtype: float32);
            await collectives!.AllGather(mine, all, ct);
            return (all.narrow(0, 0, count).clone().DetachFromDisposeScope(), labels);
        }
    }

    /// <summary>
    /// The kNN monitor's accuracy on the test split against the train split's features; each rank votes
    /// for its share of the test samples and the correct counts are summed, so all ranks return the same.
    /// </summary>
    public static async Task<double> KnnAccuracyAsync(Tensor trainFeatures, Tensor trainLabels, Tensor testFeatures, Tensor testLabels,
        int classes, int k, double temperature, ICommunicator? collectives, CancellationToken ct)
    {
        int world = collectives?.WorldSize ?? 1, rank = collectives?.Rank ?? 0;
        long count = testFeatures.shape[0], share = (count + world - 1) / world;
        long start = Math.Min(rank * share, count), rows = Math.Min(share, count - start);
        using var correct = zeros(1, dtype: float32);
        if (rows > 0)
        {
            using var features = testFeatures.narrow(0, start, rows);
            using var labels = testLabels.narrow(0, start, rows);
            using var hits = ((float)Math.Round(KnnMonitor.Accuracy(trainFeatures, trainLabels, features, labels, classes, k, temperature) * rows)).ToScalar();
            correct.fill_(hits);
        }
        if (world > 1)
            await collectives!.AllReduceSum(correct, ct);
        return correct.item<float>() / count;
    }
}
