using Pretrain.Shared.Recipes;
using Xunit;

namespace Pretrain.Tests.Training;

public class MaeRecipeTests
{
    private static string File_ => Path.Combine(TestRecipes.RepositoryRoot, "recipes", "mae-fashion-mnist.yaml");
    private static string Mae => File.ReadAllText(File_);

    [Fact]
    public void The_MAE_recipe_loads_its_vision_transformer_and_its_own_section()
    {
        var r = RecipeLoader.Load(File_);
        Assert.Equal("mae", r.Method);
        Assert.True(r.IsVision);
        Assert.Equal(new VisionTransformerModel(PatchSize: 4, Layers: 4, Heads: 4, Width: 128, FeatureGrid: 7), r.Model);
        Assert.Equal(new MaeOptions(MaskRatio: 0.75, DecoderWidth: 64, DecoderLayers: 1, DecoderHeads: 4, NormPixLoss: true), r.Options);
        Assert.Equal([0.9, 0.95], r.Optimizer.Betas);
        Assert.Equal(0.0, r.Augment!.JitterProbability);
    }

    [Fact]
    public void The_MAE_section_defaults_to_the_papers_mask_ratio_and_a_light_decoder()
    {
        var text = System.Text.RegularExpressions.Regex.Replace(Mae, @"(?m)^mae:\n(  .*\n)+", "");
        var options = Assert.IsType<MaeOptions>(RecipeLoader.Parse(text, File_).Options);
        Assert.Equal(new MaeOptions(0.75, 128, 1, 4, true), options);
    }

    [Theory]
    [InlineData("mask_ratio", "1.0", "mae.mask_ratio: 1 hides every patch")]
    [InlineData("mask_ratio", "0", "mae.mask_ratio: 0 is out of range")]
    [InlineData("width", "130", "model.width: 130 is not a multiple of 4")]
    [InlineData("heads", "3", "model.heads: width 128 is not divisible by heads 3")]
    [InlineData("decoder_width", "66", "mae.decoder_width: 66 is not a multiple of 4")]
    [InlineData("decoder_heads", "3", "mae.decoder_heads: decoder_width 64 is not divisible by decoder_heads 3")]
    [InlineData("patch_size", "0", "model.patch_size: 0 is out of range")]
    [InlineData("feature_grid", "0", "model.feature_grid: 0 is out of range")]
    [InlineData("decoder_layers", "two", "mae.decoder_layers: expected an integer")]
    public void A_bad_MAE_value_is_rejected_naming_the_field(string key, string value, string expected) =>
        Assert.Contains(expected, Assert.Throws<RecipeException>(() => RecipeLoader.Parse(TestRecipes.Set(Mae, key, value), File_)).Message);

    [Theory]
    [InlineData("layers", "4\n  encoder: small-cnn", "model.encoder: unknown field")]              // a contrastive encoder on a ViT
    [InlineData("seed", "1\nsimclr:\n  temperature: 0.1", "simclr: this recipe's method is mae")] // another method's section
    [InlineData("method", "gpt", "data.images: gpt trains on text")]                              // the images on a text method
    public void An_impossible_MAE_combination_is_rejected_naming_the_field(string key, string value, string expected) =>
        Assert.Contains(expected, Assert.Throws<RecipeException>(() => RecipeLoader.Parse(TestRecipes.Set(Mae, key, value), File_)).Message);
}
