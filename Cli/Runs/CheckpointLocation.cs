using Pretrain.Cli.Commands;
using Pretrain.Shared.Recipes;
using Pretrain.Worker.Training.Checkpoints;

namespace Pretrain.Cli.Runs;

/// <summary>
/// How the commands that read a checkpoint (<c>pretrain eval</c>, <c>pretrain export</c>) find it and the recipe it was
/// trained with, so both take the same options and refuse the same things with the same words.
/// </summary>
static class CheckpointLocation
{
    /// <summary>
    /// The checkpoint in <paramref name="checkpoint"/>, verified, or else the newest valid one of <paramref name="runDirectory"/>
    /// (broken ones are skipped with a warning naming the file). A missing folder is a <see cref="UserError"/>; a checkpoint
    /// that fails verification an <see cref="InvalidDataException"/> naming the file that is wrong — both exit 2.
    /// </summary>
    public static VerifiedCheckpoint Locate(string? checkpoint, string? runDirectory, RunConsole console)
    {
        if (checkpoint is { } directory)
        {
            directory = Path.TrimEndingDirectorySeparator(directory);   // "step-00000300/" names the same checkpoint
            return Directory.Exists(directory) ? CheckpointStore.Open(directory)
                : throw new UserError($"--checkpoint: {directory} does not exist");
        }
        var run = runDirectory ?? throw new UserError("give --run-dir DIR or --checkpoint DIR");
        if (!Directory.Exists(run))
            throw new UserError($"--run-dir: {run} does not exist");
        return new CheckpointStore(run, message => console.Error(message)).FindNewest(null)
               ?? throw new UserError($"--run-dir: {run} has no valid checkpoint under {Path.Combine(run, "checkpoints")}");
    }

    /// <summary>
    /// The recipe saved in <paramref name="checkpoint"/>, its relative data paths resolved against <paramref name="anchor"/>
    /// (the recipe file the run started from; default: the saved copy). Its hash must be the manifest's.
    /// </summary>
    public static async Task<Recipe> SavedRecipeAsync(VerifiedCheckpoint checkpoint, string? anchor, CancellationToken ct)
    {
        var saved = Path.Combine(checkpoint.Directory, CheckpointStore.RecipeFile);
        var recipe = RecipeLoader.Parse(await File.ReadAllTextAsync(saved, ct), anchor ?? saved);
        if (recipe.Source.Hash != checkpoint.Manifest.RecipeHash)
            throw new InvalidDataException($"{saved}: recipe hash {recipe.Source.Hash} does not match the manifest's {checkpoint.Manifest.RecipeHash}");
        return recipe;
    }
}
