using Pretrain.Shared.Recipes;
using Xunit;

namespace Pretrain.Tests.Training;

public class RecipeTests
{
    private static string Tiny => File.ReadAllText(TestRecipes.TinyRecipePath);
    private static string File_ => TestRecipes.TinyRecipePath;

    private static RecipeException Rejected(string text) =>
        Assert.Throws<RecipeException>(() => RecipeLoader.Parse(text, File_));

    [Fact]
    public void Tiny_recipe_loads_every_field()
    {
        var r = RecipeLoader.Load(File_);
        Assert.Equal("gpt", r.Method);
        Assert.Equal(30, r.Steps);
        Assert.Equal((2, 2, 64, 64, 0.0), (r.Model.Layers, r.Model.Heads, r.Model.Width, r.Model.Context, r.Model.Dropout));
        Assert.Equal([0.9, 0.95], r.Optimizer.Betas);
        Assert.Equal(12, r.Batch.Global);
        Assert.Equal((10L, 3), (r.Checkpoint.Every, r.Checkpoint.Keep));
        Assert.Equal(16, r.Source.Hash.Length);
        foreach (var w in new[] { 1, 2, 3, 4, 6 })
            r.ValidateForWorldSize(w);
    }

    [Fact]
    public void Relative_data_path_resolves_against_the_recipe_folder() =>
        Assert.Equal(Path.Combine(TestRecipes.RepositoryRoot, "data", "kjv.txt"), RecipeLoader.Load(File_).Data.TextPath);

    [Fact]
    public void Unknown_field_is_rejected_naming_the_field_and_file()
    {
        var e = Rejected(Tiny.Replace("  warmup_steps: 5", "  warmup_step: 5"));
        Assert.Contains("schedule.warmup_step", e.Message);
        Assert.Contains(File_, e.Message);
    }

    [Fact]
    public void Wrong_type_is_rejected_naming_the_field() =>
        Assert.Contains("optimizer.lr", Rejected(TestRecipes.Set(Tiny, "lr", "fast")).Message);

    [Fact]
    public void Mapping_where_a_number_belongs_is_rejected() =>
        Assert.Contains("model.layers", Rejected(TestRecipes.Set(Tiny, "layers", "{a: 1}")).Message);

    [Fact]
    public void Out_of_range_value_is_rejected() =>
        Assert.Contains("data.validation_fraction", Rejected(TestRecipes.Set(Tiny, "validation_fraction", "0.9")).Message);

    [Fact]
    public void Missing_field_is_rejected() =>
        Assert.Contains("checkpoint.keep: missing", Rejected(System.Text.RegularExpressions.Regex.Replace(Tiny, "(?m)^  keep:.*$", "")).Message);

    [Fact]
    public void Width_not_divisible_by_heads_is_rejected() =>
        Assert.Contains("model.heads", Rejected(TestRecipes.Set(Tiny, "heads", "3")).Message);

    [Fact]
    public void Min_lr_above_lr_is_rejected() =>
        Assert.Contains("optimizer.min_lr", Rejected(TestRecipes.Set(Tiny, "min_lr", "0.1")).Message);

    [Fact]
    public void Unknown_method_is_rejected_listing_the_supported_ones() =>
        Assert.Contains("supported: gpt", Rejected(TestRecipes.Set(Tiny, "method", "simclr")).Message);

    [Fact]
    public void Global_batch_not_divisible_by_world_size_is_rejected()
    {
        var e = Assert.Throws<RecipeException>(() => RecipeLoader.Load(File_).ValidateForWorldSize(5));
        Assert.Contains("batch.global", e.Message);
        Assert.Contains("world size 5", e.Message);
    }

    [Fact]
    public void Hash_ignores_comments_and_layout_but_not_values()
    {
        var original = RecipeLoader.Parse(Tiny, File_).Source.Hash;
        var recommented = RecipeLoader.Parse(Tiny.Replace("# total optimizer steps", "# a different comment") + "\n\n", File_).Source.Hash;
        var changed = RecipeLoader.Parse(TestRecipes.Set(Tiny, "seed", "7"), File_).Source.Hash;
        Assert.Equal(original, recommented);
        Assert.NotEqual(original, changed);
    }
}
