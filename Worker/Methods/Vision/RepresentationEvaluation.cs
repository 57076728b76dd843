using Pretrain.Shared.Recipes;
using Pretrain.Worker.Collectives;
using Pretrain.Worker.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Pretrain.Worker.Methods.Vision;

/// <summary>
/// The evaluation shared by SimCLR and MoCo during training: make the encoder's batch-norm running
/// statistics agree across ranks (each rank's local BN saw its own batches), then the kNN monitor of the
/// frozen features, test split against the first <c>eval.knn_train_samples</c> training images.
/// </summary>
public sealed class RepresentationEvaluation(MethodContext context, ImageData data) : IDisposable
{
    private ImageBatch? _train, _test;

    /// <param name="statistics">The float running statistics of the encoder's BN layers, averaged in place; none for an encoder without BN (MAE's ViT).</param>
    public async Task<IReadOnlyDictionary<string, double>> KnnAsync(ICommunicator collectives, Func<Tensor, Tensor> features, int featureSize,
        IReadOnlyList<Tensor> statistics, CancellationToken ct)
    {
        if (collectives.WorldSize > 1 && statistics.Count > 0)
            await AverageAsync(collectives, statistics, ct);
        _train ??= new ImageBatch(data.ImagesPath, "train", FrozenFeatures.ChunkSize);
        _test ??= new ImageBatch(data.ImagesPath, "test", FrozenFeatures.ChunkSize);
        var eval = context.Recipe.Eval;
        var (trainFeatures, trainLabels) = await FrozenFeatures.OfSplitAsync(_train, features, featureSize, collectives, ct, eval.KnnTrainSamples);
        using (trainFeatures)
        using (trainLabels)
        {
            var (testFeatures, testLabels) = await FrozenFeatures.OfSplitAsync(_test, features, featureSize, collectives, ct);
            using (testFeatures)
            using (testLabels)
            {
                var accuracy = await FrozenFeatures.KnnAccuracyAsync(trainFeatures, trainLabels, testFeatures, testLabels,
                    _train.Classes, eval.KnnK, eval.KnnTemperature, collectives, ct);
                return new Dictionary<string, double> { ["knn_accuracy"] = accuracy };
            }
        }
    }

    /// <summary>The float32 buffers of <paramref name="module"/> (BN running mean and variance), by name order.</summary>
    public static Tensor[] RunningStatistics(IEnumerable<(string Name, Tensor Tensor)> buffers) =>
        buffers.Select(b => b.Tensor).Where(t => t.dtype == float32).ToArray();

    /// <summary>Runs <paramref name="encode"/> with <paramref name="module"/> in eval mode and without gradient, then restores its mode.</summary>
    public static Tensor Frozen(nn.Module module, Func<Tensor> encode)
    {
        var training = module.training;
        module.eval();
        try
        {
            using var noGrad = no_grad();
            return encode();
        }
        finally
        {
            if (training) module.train();
        }
    }

    private static async Task AverageAsync(ICommunicator collectives, IReadOnlyList<Tensor> statistics, CancellationToken ct)
    {
        using var packed = cat(statistics.Select(t => t.reshape(-1)).ToArray(), 0);
        await collectives.AllReduceSum(packed, ct);
        using (var world = collectives.WorldSize.ToScalar())   // explicit: an implicit Scalar may be finalized mid-call (see GlobalBatchNorm2d)
            packed.div_(world);
        long offset = 0;
        using var noGrad = no_grad();
        foreach (var t in statistics)
        {
            using var part = packed.narrow(0, offset, t.numel());
            t.copy_(part.view(t.shape));
            offset += t.numel();
        }
    }

    public void Dispose()
    {
        _train?.Dispose();
        _test?.Dispose();
    }
}
