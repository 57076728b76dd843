using System.CommandLine;
using Pretrain.Cli.Runs;

namespace Pretrain.Cli.Commands;

/// <summary>
/// `pretrain demo`: the main job with defaults, for a first look — prepare Fashion-MNIST into shards
/// (once), pretrain SimCLR with 2 local workers, then the linear evaluation of the last checkpoint beside
/// the raw-pixel baseline.
/// </summary>
static class DemoCommand
{
    public const string Recipe = "recipes/simclr-fashion-mnist.yaml";

    public static Command Create()
    {
        var workers = CommonOptions.Workers(2).Positive();
        var runDir = CommonOptions.RunDir();
        var maxSteps = CommonOptions.MaxSteps();
        var verbose = CommonOptions.Verbose();
        var command = new Command("demo",
            $"Pretrain SimCLR on Fashion-MNIST with 2 local workers ({Recipe}, ~5 min on 2 cores), then compare a linear probe on its features with one on raw pixels.")
        {
            workers, runDir, maxSteps, verbose,
        };
        command.SetAction((parse, ct) => CommandRunner.RunAsync(async () =>
        {
            var recipePath = Path.GetFullPath(Recipe);                    // LocalRun prepares Fashion-MNIST on first use
            var runDirectory = parse.GetValue(runDir)?.FullName
                               ?? Path.GetFullPath(Path.Combine("runs", "demo-" + DateTime.Now.ToString("yyyyMMdd-HHmmss")));
            var trained = await LocalRun.RunAsync(new RunOptions
            {
                RecipePath = recipePath,
                Workers = parse.GetValue(workers),
                MaxSteps = parse.GetValue(maxSteps),
                RunDirectory = runDirectory,
                Verbose = parse.GetValue(verbose),
            }, ct);
            if (trained != 0) return trained;
            return await EvalRun.RunAsync(new EvalOptions { RunDirectory = runDirectory, Verbose = parse.GetValue(verbose) }, ct);
        }));
        return command;
    }
}
