using Pretrain.Shared.Recipes;
using Pretrain.Tests.Training;
using Pretrain.Worker.Training;

namespace Pretrain.Tests.Methods;

/// <summary>
/// A short MAE recipe over <see cref="SmallFashionMnist"/>'s 2,000 images, with the seed and global batch of its SimCLR and
/// MoCo recipes (the elastic tests' sample digest relies on both): by default a ViT of half the shipped recipe's width and
/// depth, so the many short runs of the tests stay cheap; the end-to-end probe test asks for the shipped size.
/// </summary>
internal static class SmallMae
{
    public static Recipe Recipe(long steps, long checkpointEvery = 1000, int width = 64, int layers = 2, int featureGrid = 2)
    {
        TorchThreads.Configure(workersOnThisMachine: Environment.ProcessorCount);
        var text = $"""
            method: mae
            seed: 7
            steps: {steps}
            data:
              images: {SmallFashionMnist.Folder}
            model:
              patch_size: 4
              layers: {layers}
              heads: 4
              width: {width}
              feature_grid: {featureGrid}
            mae:
              mask_ratio: 0.75
              decoder_width: 32
              decoder_layers: 1
              decoder_heads: 2
            augment:
              crop_scale: [0.6, 1.0]
              flip_probability: 0.5
              jitter_probability: 0
              grayscale_probability: 0
              blur_probability: 0
            optimizer:
              name: adamw
              lr: 0.002
              min_lr: 0.0002
              betas: [0.9, 0.95]
              weight_decay: 0.05
            schedule:
              warmup_steps: 1
            batch:
              global: 64
            checkpoint:
              every: {checkpointEvery}
              keep: 3
            eval:
              knn_k: 20
            """;
        return RecipeLoader.Parse(text, Path.Combine(TestRecipes.RepositoryRoot, "recipes", "mae-test.yaml"));
    }
}
