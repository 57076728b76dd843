using Pretrain.Cli.Commands;
using Pretrain.Worker.Export;

namespace Pretrain.Cli.Runs;

/// <summary>What `pretrain export` needs.</summary>
public sealed record ExportOptions
{
    public string? RunDirectory { get; init; }   // newest valid checkpoint of the run
    public string? Checkpoint { get; init; }     // or this checkpoint directory
    public required string Output { get; init; } // the safetensors file to write
    public string? What { get; init; }           // "encoder" or "model"; null: the method's default (CheckpointExport.DefaultPart)
    public bool Force { get; init; }             // replace an existing Output
}

/// <summary>
/// `pretrain export`: a checkpoint's encoder (or whole model) as a safetensors file. Finds and verifies the checkpoint
/// as `pretrain eval` does (a corrupted one is refused, naming its file), reads the recipe saved in it for the
/// metadata, and leaves the writing to <see cref="CheckpointExport"/>. Refuses before any work when --out exists and
/// --force is not given, so a slow verification never ends in a refusal.
/// </summary>
public static class ExportRun
{
    public static async Task<int> RunAsync(ExportOptions options, CancellationToken ct)
    {
        var console = new RunConsole(verbose: false);
        var output = Path.GetFullPath(options.Output);
        if (Directory.Exists(output))
            throw new UserError($"--out: {output} is a folder; give the file to write, e.g. {Path.Combine(output, "encoder.safetensors")}");
        if (File.Exists(output) && !options.Force)
            throw new UserError($"--out: {output} already exists; give --force to replace it");

        var checkpoint = CheckpointLocation.Locate(options.Checkpoint, options.RunDirectory, console);
        var recipe = await CheckpointLocation.SavedRecipeAsync(checkpoint, anchor: null, ct);
        var part = options.What switch
        {
            null => CheckpointExport.DefaultPart(recipe.Method),
            "encoder" => ExportPart.Encoder,
            "model" => ExportPart.Model,
            var other => throw new UserError($"--what: '{other}' is not a part; give encoder or model"),
        };
        if (part == ExportPart.Encoder && CheckpointExport.EncoderPrefix(recipe.Method) is null)
            throw new UserError($"--what encoder: {checkpoint.Directory} is a {recipe.Method} checkpoint, whose encoder is its whole model; give --what model");

        ct.ThrowIfCancellationRequested();
        var report = CheckpointExport.Write(checkpoint, recipe, part, output, options.Force);
        console.Info($"wrote {report.Path}: the {CheckpointExport.NameOf(report.Part)} of {recipe.Method} checkpoint {checkpoint.Directory} " +
                     $"(step {report.Step}), {report.Tensors} tensors, {report.Bytes:N0} bytes");
        return 0;
    }
}
