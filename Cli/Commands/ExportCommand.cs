using System.CommandLine;
using Pretrain.Cli.Runs;

namespace Pretrain.Cli.Commands;

/// <summary>`pretrain export`: a checkpoint's encoder or whole model as a safetensors file.</summary>
static class ExportCommand
{
    public static Command Create()
    {
        var runDir = CommonOptions.RunDir();
        runDir.Description = "Run directory: exports its newest valid checkpoint.";
        var checkpoint = new Option<DirectoryInfo?>("--checkpoint") { Description = "A checkpoint directory (RUN/checkpoints/step-NNNNNNNN) instead of the newest." };
        var output = new Option<FileInfo>("--out")
        {
            Description = "The safetensors file to write (FILE.safetensors; its folder is made if need be). Written to a temporary file beside it, then renamed.",
            Required = true,
        };
        var what = new Option<string?>("--what")
        {
            Description = "encoder: the encoder alone, its parameters and batch-norm statistics, named without 'encoder.' (default for the image methods: simclr, moco, byol, mae; MAE's decoder stays out); " +
                          "model: every tensor of the checkpoint's model.tensors, named as there (default for gpt and bert). Optimizer state is never exported.",
        };
        what.AcceptOnlyFromAmong("encoder", "model");
        var force = new Option<bool>("--force") { Description = "Replace --out when it exists (without it an existing file is refused and left untouched)." };
        var command = new Command("export", "Write a checkpoint's encoder (or whole model) as a safetensors file, with metadata naming the architecture, method, recipe hash and step.")
        {
            runDir, checkpoint, output, what, force,
        };
        command.Validators.Add(r =>
        {
            if (r.GetValue(runDir) == null && r.GetValue(checkpoint) == null) r.AddError("give --run-dir DIR or --checkpoint DIR.");
        });
        command.SetAction((parse, ct) => CommandRunner.RunAsync(() => ExportRun.RunAsync(new ExportOptions
        {
            RunDirectory = parse.GetValue(runDir)?.FullName,
            Checkpoint = parse.GetValue(checkpoint)?.FullName,
            Output = parse.GetRequiredValue(output).FullName,
            What = parse.GetValue(what),
            Force = parse.GetValue(force),
        }, ct)));
        return command;
    }
}
