using System.CommandLine;
using Pretrain.Cli.Runs;

namespace Pretrain.Cli.Commands;

/// <summary>`pretrain demo`: the main job with defaults, for a first look.</summary>
static class DemoCommand
{
    public const string Recipe = "recipes/gpt-kjv-demo.yaml";

    public static Command Create()
    {
        var workers = CommonOptions.Workers(2).Positive();
        var runDir = CommonOptions.RunDir();
        var verbose = CommonOptions.Verbose();
        var command = new Command("demo", $"Pretrain a small GPT on the King James Bible with 2 local workers ({Recipe}), then evaluate it.")
        {
            workers, runDir, verbose,
        };
        command.SetAction((parse, ct) => CommandRunner.RunAsync(() => LocalRun.RunAsync(new RunOptions
        {
            RecipePath = Path.GetFullPath(Recipe),
            Workers = parse.GetValue(workers),
            RunDirectory = parse.GetValue(runDir)?.FullName,
            Verbose = parse.GetValue(verbose),
        }, ct)));
        return command;
    }
}
