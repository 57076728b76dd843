using Pretrain.Cli.Commands;
using Pretrain.Data.Preparation;
using Pretrain.Data.Shards;
using Pretrain.Shared.Recipes;

namespace Pretrain.Cli.Runs;

/// <summary>
/// The data a local run's recipe names, checked before any worker starts — so a missing file is one
/// error naming the recipe field, not a stack trace from every worker. The prepared folders of the
/// shipped recipes (data/fashion-mnist, data/kjv-cl100k) are prepared on first use from the Debian
/// packages the launcher installs, as the launcher writes data/kjv.txt; any other missing folder is an
/// error that says how to prepare it.
/// </summary>
public static class LocalData
{
    /// <summary>0 when the data is there (or was just prepared), else the failed preparation's exit code.</summary>
    public static async Task<int> EnsureAsync(string recipePath, bool verbose, CancellationToken ct)
    {
        recipePath = Path.GetFullPath(recipePath);
        if (!File.Exists(recipePath))
            return 0;                                                   // the run itself reports a missing recipe
        var (field, folder, prepare) = RecipeLoader.Load(recipePath).Data switch
        {
            TextData text when !File.Exists(text.TextPath) =>
                throw new UserError($"{recipePath}: data.text: {text.TextPath} does not exist (expected a UTF-8 text file)."),
            ImageData images => ("data.images", images.ImagesPath, "fashion-mnist|cifar10|images"),
            TokenData tokens => ("data.tokens", tokens.TokensPath, "text"),
            _ => (null, null, null),
        };
        if (folder is null || File.Exists(Path.Combine(folder, ShardIndex.FileName)))
            return 0;
        var spec = Shipped(folder) ?? throw new UserError(
            $"{recipePath}: {field}: {folder} holds no prepared dataset (no {ShardIndex.FileName}); prepare it first: pretrain prepare {prepare} --output {folder}");
        return await PrepareRun.RunAsync(new PrepareOptions
        {
            Spec = spec,
            Plans = PreparationPlans.Create,
            RunDirectory = folder,
            Verbose = verbose,
        }, ct);
    }

    /// <summary>How the shipped recipes' folders are made, by folder name; null for any other folder.</summary>
    private static PrepareSpec? Shipped(string folder) => Path.GetFileName(folder) switch
    {
        "fashion-mnist" => new PrepareSpec("fashion-mnist", [PrepareCommand.FashionMnistDirectory], folder, ValidationFraction: 0),
        "kjv-cl100k" when File.Exists(Path.Combine(Path.GetDirectoryName(folder)!, "kjv.txt")) =>
            new PrepareSpec("text", [Path.Combine(Path.GetDirectoryName(folder)!, "kjv.txt")], folder, "cl100k_base",
                CompactVocabulary: true, ValidationFraction: 0.02),
        _ => null,
    };
}
