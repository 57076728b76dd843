using System.CommandLine;
using Pretrain.Cli.Runs;

namespace Pretrain.Cli.Commands;

/// <summary>`pretrain eval`: linear probe on the frozen features of a checkpoint, beside raw pixels.</summary>
static class EvalCommand
{
    public static Command Create()
    {
        var runDir = CommonOptions.RunDir();
        runDir.Description = "Run directory: evaluates its newest valid checkpoint and adds the results to its summary.json.";
        var checkpoint = new Option<DirectoryInfo?>("--checkpoint") { Description = "A checkpoint directory (RUN/checkpoints/step-NNNNNNNN) instead of the newest." };
        var data = new Option<DirectoryInfo?>("--data") { Description = "Prepared image folder with train and test splits (default: the recipe's data.images)." };
        var epochs = new Option<int>("--epochs") { Description = "Linear-probe training epochs.", DefaultValueFactory = _ => 10 }.Positive();
        var verbose = CommonOptions.Verbose();
        var command = new Command("eval", "Linear evaluation of a SimCLR/MoCo/BYOL checkpoint: a linear classifier on frozen features (test split), beside the same probe on raw pixels and the kNN monitor.")
        {
            runDir, checkpoint, data, epochs, verbose,
        };
        command.Validators.Add(r =>
        {
            if (r.GetValue(runDir) == null && r.GetValue(checkpoint) == null) r.AddError("give --run-dir DIR or --checkpoint DIR.");
        });
        command.SetAction((parse, ct) => CommandRunner.RunAsync(() => EvalRun.RunAsync(new EvalOptions
        {
            RunDirectory = parse.GetValue(runDir)?.FullName,
            Checkpoint = parse.GetValue(checkpoint)?.FullName,
            Data = parse.GetValue(data)?.FullName,
            Epochs = parse.GetValue(epochs),
            Verbose = parse.GetValue(verbose),
        }, ct)));
        return command;
    }
}
