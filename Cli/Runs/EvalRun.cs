using Pretrain.Cli.Commands;
using Pretrain.Coordinator.Summary;
using Pretrain.Shared.Recipes;
using Pretrain.Worker.Evaluation;
using Pretrain.Worker.Training;
using Pretrain.Worker.Training.Checkpoints;

namespace Pretrain.Cli.Runs;

/// <summary>What `pretrain eval` needs.</summary>
public sealed record EvalOptions
{
    public string? RunDirectory { get; init; }   // newest checkpoint of the run; summary.json gets the results
    public string? Checkpoint { get; init; }     // or this checkpoint directory
    public string? Data { get; init; }           // prepared image folder; default: the recipe's data.images
    public int Epochs { get; init; } = 10;       // linear-probe epochs
    public bool Verbose { get; init; }
}

/// <summary>
/// `pretrain eval`: the linear evaluation protocol on a checkpoint, beside the same probe on raw pixels.
/// Reads the recipe saved in the checkpoint (data paths resolve against the recipe file the run was
/// started with, recorded in summary.json, or are given with --data), prints the accuracies and adds
/// them to the run's summary.json.
/// </summary>
public static class EvalRun
{
    public static async Task<int> RunAsync(EvalOptions options, CancellationToken ct)
    {
        var console = new RunConsole(options.Verbose);
        var checkpoint = CheckpointLocation.Locate(options.Checkpoint, options.RunDirectory, console);
        string? summaryPath = options.RunDirectory is { } run ? Path.Combine(run, "summary.json") : null;
        var summary = summaryPath is not null && File.Exists(summaryPath) ? RunSummary.Read(summaryPath) : null;

        // Relative data paths in the saved recipe are relative to the recipe file the run started from.
        var anchor = summary?.Recipe is { } original && File.Exists(original) ? original : null;
        var recipe = await CheckpointLocation.SavedRecipeAsync(checkpoint, anchor, ct);
        if (recipe.Data is not ImageData images)
            throw new UserError($"eval: {checkpoint.Directory} is a {recipe.Method} checkpoint; the linear probe is for the image methods ({string.Join(", ", RecipeLoader.VisionMethods)}) " +
                                "(text methods are evaluated at the end of training: see summary.json's eval)");
        if (options.Data is { } data)
            recipe = recipe with { Data = new ImageData(data, Path.GetFullPath(data)) };
        var folder = ((ImageData)recipe.Data).ImagesPath;
        if (!File.Exists(Path.Combine(folder, Pretrain.Data.Shards.ShardIndex.FileName)))
            throw new UserError($"--data: {folder} has no {Pretrain.Data.Shards.ShardIndex.FileName}; give the folder written by " +
                                $"`pretrain prepare {(images.Images.Contains("cifar", StringComparison.OrdinalIgnoreCase) ? "cifar10" : "fashion-mnist")} --output DIR`");

        TorchThreads.Configure(1);
        console.Info($"eval {recipe.Method} checkpoint {checkpoint.Directory} (step {checkpoint.State.Step}) on {folder}");
        var report = await Task.Run(() => CheckpointEvaluation.RunAsync(checkpoint, recipe, new LinearProbe(Epochs: options.Epochs),
            message => console.Info(message), ct), ct);

        console.Info($"linear probe, frozen {report.FeatureSize}-d features : {report.LinearProbeAccuracy:P2}  (test split, {report.TestSamples} images)");
        console.Info($"linear probe, raw pixels             : {report.RawPixelAccuracy:P2}  (the baseline)");
        console.Info($"kNN monitor (k {recipe.Eval.KnnK})                : {report.KnnAccuracy:P2}");
        console.Info(report.LinearProbeAccuracy > report.RawPixelAccuracy
            ? $"the representation beats raw pixels by {100 * (report.LinearProbeAccuracy - report.RawPixelAccuracy):0.00} points ({report.Seconds:0} s)"
            : $"the representation does NOT beat raw pixels ({100 * (report.LinearProbeAccuracy - report.RawPixelAccuracy):0.00} points; {report.Seconds:0} s)");

        if (summary is not null && summaryPath is not null)
        {
            var eval = new Dictionary<string, double>(summary.Eval)
            {
                ["linear_probe_accuracy"] = report.LinearProbeAccuracy,
                ["raw_pixel_probe_accuracy"] = report.RawPixelAccuracy,
                ["knn_accuracy"] = report.KnnAccuracy,
                ["eval_step"] = report.Step,
            };
            await (summary with { Eval = eval }).WriteAsync(Path.GetDirectoryName(summaryPath)!, ct);
            console.Info($"summary: {summaryPath}");
        }
        return 0;
    }
}
