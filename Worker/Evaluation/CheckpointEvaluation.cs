using System.Diagnostics;
using Pretrain.Shared.Recipes;
using Pretrain.Worker.Collectives;
using Pretrain.Worker.Methods;
using Pretrain.Worker.Methods.Vision;
using Pretrain.Worker.Training;
using Pretrain.Worker.Training.Checkpoints;
using TorchSharp;
using static TorchSharp.torch;

namespace Pretrain.Worker.Evaluation;

/// <summary>What <c>pretrain eval</c> measured on one checkpoint.</summary>
public sealed record ProbeReport(
    long Step,                    // the checkpoint's step
    double LinearProbeAccuracy,   // linear probe on the frozen representation, test split
    double RawPixelAccuracy,      // the same probe on raw pixels: the baseline to beat
    double KnnAccuracy,           // kNN monitor (k, T of the recipe) on the frozen representation
    int FeatureSize,              // width of the representation
    long TrainSamples,            // samples the probe was trained on
    long TestSamples,             // samples it was tested on
    double Seconds);              // wall time of the evaluation

/// <summary>
/// The linear evaluation protocol on a checkpoint (<c>pretrain eval</c>): rebuild the method from the
/// checkpoint's recipe in one process, load its weights, encode the train and test splits with the frozen
/// encoder, train a linear probe on the train features and test it — beside the same probe on raw pixels
/// and the kNN monitor.
/// </summary>
public static class CheckpointEvaluation
{
    public static async Task<ProbeReport> RunAsync(VerifiedCheckpoint checkpoint, Recipe recipe, LinearProbe probe,
        Action<string> progress, CancellationToken ct)
    {
        var clock = Stopwatch.StartNew();
        var images = recipe.Data as ImageData ?? throw new ArgumentException(
            $"method {recipe.Method} has no frozen image features to probe; its evaluation is in summary.json's eval");
        using var method = MethodFactory.Create(new MethodContext(recipe, TimeSpan.FromSeconds(60), new StepPhases(), progress))
            as IRepresentationMethod ?? throw new ArgumentException($"method {recipe.Method} has no frozen image features to probe");
        using (no_grad())
            checkpoint.LoadModel(method.Parameters.Select(p => (p.Name, (Tensor)p.Parameter)).Concat(method.State).ToDictionary(p => p.Item1, p => p.Item2));

        using var train = new ImageBatch(images.ImagesPath, "train", FrozenFeatures.ChunkSize);
        using var test = new ImageBatch(images.ImagesPath, "test", FrozenFeatures.ChunkSize);
        int featureSize;
        using (no_grad())
        using (var maxByte = 255.ToScalar())   // explicit: an implicit Scalar may be finalized mid-call (see GlobalBatchNorm2d)
        using (var one = test.Load([0L]))
        using (var x = one.to_type(float32).div_(maxByte))
        using (var f = method.Features(x))
            featureSize = (int)f.shape[1];

        progress($"encoding {train.Count} train and {test.Count} test images with the frozen encoder of step {checkpoint.State.Step}");
        var (trainFeatures, trainLabels) = await FrozenFeatures.OfSplitAsync(train, method.Features, featureSize, null, ct);
        var (testFeatures, testLabels) = await FrozenFeatures.OfSplitAsync(test, method.Features, featureSize, null, ct);
        double linear, knn, raw;
        using (trainFeatures) using (trainLabels) using (testFeatures) using (testLabels)
        {
            progress($"kNN monitor (k {recipe.Eval.KnnK}, T {recipe.Eval.KnnTemperature}) and a linear probe on {featureSize}-d features ({probe.Epochs} epochs)");
            knn = await FrozenFeatures.KnnAccuracyAsync(trainFeatures, trainLabels, testFeatures, testLabels, train.Classes,
                recipe.Eval.KnnK, recipe.Eval.KnnTemperature, null, ct);
            linear = probe.Accuracy(trainFeatures, trainLabels, testFeatures, testLabels, train.Classes);
        }
        int pixels = train.Channels * train.Height * train.Width;
        progress($"the same linear probe on raw pixels ({pixels}-d)");
        var (trainPixels, trainPixelLabels) = await FrozenFeatures.OfSplitAsync(train, x => x.flatten(1), pixels, null, ct);
        var (testPixels, testPixelLabels) = await FrozenFeatures.OfSplitAsync(test, x => x.flatten(1), pixels, null, ct);
        using (trainPixels) using (trainPixelLabels) using (testPixels) using (testPixelLabels)
            raw = probe.Accuracy(trainPixels, trainPixelLabels, testPixels, testPixelLabels, train.Classes);
        return new ProbeReport(checkpoint.State.Step, linear, raw, knn, featureSize, train.Count, test.Count, clock.Elapsed.TotalSeconds);
    }
}
