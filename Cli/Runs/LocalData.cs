using Pretrain.Cli.Commands;
using Pretrain.Data.Preparation;
using Pretrain.Data.Shards;
using Pretrain.Shared.Recipes;

namespace Pretrain.Cli.Runs;

/// <summary>
/// The data a local run's recipe names, checked before any worker starts — so a missing file is one
/// error naming the recipe field, not a stack trace from every worker. Fashion-MNIST, the dataset of
/// the shipped vision recipes, is prepared on first use from the Debian package the launcher installs
/// (as the launcher writes data/kjv.txt for the text recipes); any other missing folder is an error
/// that says how to prepare it.
/// </summary>
public static class LocalData
{
    /// <summary>0 when the data is there (or was just prepared), else the failed preparation's exit code.</summary>
    public static async Task<int> EnsureAsync(string recipePath, bool verbose, CancellationToken ct)
    {
        recipePath = Path.GetFullPath(recipePath);
        if (!File.Exists(recipePath))
            return 0;                                                   // the run itself reports a missing recipe
        switch (RecipeLoader.Load(recipePath).Data)
        {
            case TextData text when !File.Exists(text.TextPath):
                throw new UserError($"{recipePath}: data.text: {text.TextPath} does not exist (expected a UTF-8 text file).");
            case ImageData images when !File.Exists(Path.Combine(images.ImagesPath, ShardIndex.FileName)):
                if (Path.GetFileName(images.ImagesPath) != "fashion-mnist")
                    throw new UserError($"{recipePath}: data.images: {images.ImagesPath} holds no prepared dataset (no {ShardIndex.FileName}); " +
                                        $"prepare it first: pretrain prepare fashion-mnist|cifar10|images --output {images.ImagesPath}");
                return await PrepareRun.RunAsync(new PrepareOptions
                {
                    Spec = new PrepareSpec("fashion-mnist", [PrepareCommand.FashionMnistDirectory], images.ImagesPath, ValidationFraction: 0),
                    Plans = PreparationPlans.Create,
                    RunDirectory = images.ImagesPath,
                    Verbose = verbose,
                }, ct);
            default:
                return 0;
        }
    }
}
