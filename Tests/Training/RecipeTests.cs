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
        Assert.Equal((2, 2, 64, 64, 0.0), (r.Transformer.Layers, r.Transformer.Heads, r.Transformer.Width, r.Transformer.Context, r.Transformer.Dropout));
        Assert.Equal([0.9, 0.95], r.Optimizer.Betas);
        Assert.Equal(12, r.Batch.Global);
        Assert.Equal((10L, 3), (r.Checkpoint.Every, r.Checkpoint.Keep));
        Assert.Equal(16, r.Source.Hash.Length);
        foreach (var w in new[] { 1, 2, 3, 4, 6 })
            r.ValidateForWorldSize(w);
    }

    [Fact]
    public void Relative_data_path_resolves_against_the_recipe_folder() =>
        Assert.Equal(Path.Combine(TestRecipes.RepositoryRoot, "data", "kjv.txt"), ((TextData)RecipeLoader.Load(File_).Data).TextPath);

    [Fact]
    public void Unknown_field_is_rejected_naming_the_field_and_file()
    {
        var e = Rejected(Tiny.Replace("  warmup_steps: 5", "  warmup_step: 5"));
        Assert.Contains("schedule.warmup_step: unknown field", e.Message);   // the typo, not the missing field
        Assert.Contains("did you mean 'warmup_steps'?", e.Message);
        Assert.Contains(File_, e.Message);
    }

    [Fact]
    public void An_extra_field_is_rejected_listing_the_known_ones()
    {
        var e = Rejected(Tiny.Replace("  dropout: 0.0", "  dropout: 0.0\n  colour: blue"));
        Assert.Contains("model.colour: unknown field", e.Message);
        Assert.Contains("layers", e.Message);
    }

    [Theory]
    [InlineData("lr", "fast", "optimizer.lr: expected a number")]                    // wrong type
    [InlineData("layers", "{a: 1}", "model.layers: expected an integer")]            // mapping where a number belongs
    [InlineData("validation_fraction", "0.9", "data.validation_fraction: 0.9 is out of range")]
    [InlineData("heads", "3", "model.heads: width 64 is not divisible by heads 3")]  // impossible combination
    [InlineData("min_lr", "0.1", "optimizer.min_lr: 0.1 is out of range")]           // above lr
    [InlineData("warmup_steps", "31", "schedule.warmup_steps: 31 is out of range")]  // beyond steps
    [InlineData("method", "dino", "method: unknown method 'dino'; supported: gpt, bert, simclr, moco, byol, mae")]
    public void Bad_value_is_rejected_naming_the_field(string key, string value, string expected) =>
        Assert.Contains(expected, Rejected(TestRecipes.Set(Tiny, key, value)).Message);

    [Theory]
    [InlineData("method", "simclr", "data.text: simclr trains on images")]                       // SimCLR on text
    [InlineData("name", "lars", "optimizer.betas: lars takes momentum")]                         // knob of another optimizer
    [InlineData("seed", "1\nmoco:\n  queue_size: 10", "moco: this recipe's method is gpt")]    // another method's section
    [InlineData("seed", "1\nbyol:\n  momentum_base: 0.9", "byol: this recipe's method is gpt")]
    [InlineData("method", "byol", "data.text: byol trains on images")]                           // BYOL on text
    [InlineData("global", "12\n  accumulation: 5", "batch.accumulation: 5 micro-steps cannot split batch.global 12")]
    [InlineData("seed", "1\non_nonfinite_loss: ignore", "on_nonfinite_loss: 'ignore' is not one of: stop, skip")]
    [InlineData("text", "../data/kjv.txt\n  tokens: ../data/kjv-cl100k", "data.text: give data.text (a UTF-8 file, bytes as tokens) or data.tokens")]
    public void Impossible_combination_is_rejected_naming_the_field(string key, string value, string expected) =>
        Assert.Contains(expected, Rejected(TestRecipes.Set(Tiny, key, value)).Message);

    [Fact]
    public void A_prepared_token_folder_replaces_the_text_file_and_brings_its_own_validation_split()
    {
        var withFraction = System.Text.RegularExpressions.Regex.Replace(Tiny, "(?m)^  text: .*$", "  tokens: ../data/kjv-cl100k");
        Assert.Contains("data.validation_fraction: the validation split of data.tokens is the one `pretrain prepare text",
            Rejected(withFraction).Message);
        var text = System.Text.RegularExpressions.Regex.Replace(withFraction, "(?m)^  validation_fraction:.*\n", "");
        var data = Assert.IsType<TokenData>(RecipeLoader.Parse(text, File_).Data);
        Assert.Equal(Path.Combine(TestRecipes.RepositoryRoot, "data", "kjv-cl100k"), data.TokensPath);
    }

    [Fact]
    public void Every_shipped_recipe_loads_and_splits_over_1_2_and_4_workers()
    {
        var recipes = Directory.GetFiles(Path.Combine(TestRecipes.RepositoryRoot, "recipes"), "*.yaml");
        Assert.Contains(recipes, r => r.EndsWith("simclr-fashion-mnist.yaml"));
        Assert.Equal(RecipeLoader.Methods.Order(), recipes.Select(r => RecipeLoader.Load(r).Method).Distinct().Order());
        foreach (var file in recipes)
            foreach (var w in new[] { 1, 2, 4 })
                RecipeLoader.Load(file).ValidateForWorldSize(w);
    }

    [Fact]
    public void The_byol_section_takes_BYOLs_defaults_with_a_predictor_as_wide_as_the_projector_and_names_a_bad_value()
    {
        var shipped = RecipeLoader.Load(Path.Combine(TestRecipes.RepositoryRoot, "recipes", "byol-fashion-mnist.yaml"));
        Assert.Equal(new ByolOptions(MomentumBase: 0.99, PredictorHidden: 512, GlobalBatchNorm: true), shipped.Options);
        Assert.True(shipped.IsVision);

        // The shipped recipe spells out the defaults: without its byol section it is the same recipe, hash and all.
        var text = shipped.Source.Text;
        var bare = RecipeLoader.Parse(System.Text.RegularExpressions.Regex.Replace(text, "(?m)^byol:\n(?:^ .*\n)+", ""), shipped.Source.Path);
        Assert.Equal(shipped.Options, bare.Options);
        Assert.Equal(shipped.Source.Hash, bare.Source.Hash);
        var narrow = RecipeLoader.Parse(text.Replace("projection_hidden: 512", "projection_hidden: 256").Replace("  predictor_hidden: 512", ""), shipped.Source.Path);
        Assert.Equal(256, ((ByolOptions)narrow.Options).PredictorHidden);          // the default follows model.projection_hidden

        var e = Assert.Throws<RecipeException>(() => RecipeLoader.Parse(text.Replace("momentum_base: 0.99", "momentum_base: 1.5"), shipped.Source.Path));
        Assert.Contains("byol.momentum_base: 1.5 is out of range", e.Message);
        e = Assert.Throws<RecipeException>(() => RecipeLoader.Parse(text.Replace("byol:\n", "byol:\n  temperature: 0.2\n"), shipped.Source.Path));
        Assert.Contains("byol.temperature: unknown field", e.Message);
    }

    [Fact]
    public void Spelling_out_a_default_keeps_the_hash()
    {
        var original = RecipeLoader.Parse(Tiny, File_).Source.Hash;
        Assert.Equal(original, RecipeLoader.Parse(TestRecipes.Set(Tiny, "global", "12\n  accumulation: 1"), File_).Source.Hash);
        Assert.NotEqual(original, RecipeLoader.Parse(TestRecipes.Set(Tiny, "global", "12\n  accumulation: 2"), File_).Source.Hash);
    }

    [Fact]
    public void Missing_field_is_rejected() =>
        Assert.Contains("checkpoint.keep: missing", Rejected(System.Text.RegularExpressions.Regex.Replace(Tiny, "(?m)^  keep:.*$", "")).Message);

    [Fact]
    public void Any_world_size_up_to_the_micro_batch_is_accepted_and_more_is_rejected()
    {
        var recipe = RecipeLoader.Load(File_);               // batch.global 12
        foreach (var world in new[] { 1, 5, 7, 12 }) recipe.ValidateForWorldSize(world);
        var e = Assert.Throws<RecipeException>(() => recipe.ValidateForWorldSize(13));
        Assert.Contains("batch.global", e.Message);
        Assert.Contains("13 workers", e.Message);
    }

    [Fact]
    public void The_elastic_section_is_read_with_defaults_and_checked()
    {
        var recipe = RecipeLoader.Parse(Tiny + "\nelastic:\n  min_workers: 2\n  wait: 30\n", File_);
        Assert.Equal(new ElasticRecipe(2, 0, 30), recipe.Elastic);
        Assert.Equal(ElasticRecipe.Default, RecipeLoader.Parse(Tiny, File_).ElasticOrDefault);
        var e = Assert.Throws<RecipeException>(() => RecipeLoader.Parse(Tiny + "\nelastic:\n  min_workers: 3\n  max_workers: 2\n", File_));
        Assert.Contains("elastic.max_workers", e.Message);
        e = Assert.Throws<RecipeException>(() => RecipeLoader.Parse(Tiny + "\nelastic:\n  min_worker: 3\n", File_));
        Assert.Contains("min_worker", e.Message);
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
    [Fact]
    public void The_reproducible_section_turns_the_exact_path_on_and_the_hash_covers_it()
    {
        var plain = RecipeLoader.Parse(Tiny, File_);
        var on = RecipeLoader.Parse(Tiny + "\nreproducible:\n  enabled: true\n  shards: 6\n", File_);
        var off = RecipeLoader.Parse(Tiny + "\nreproducible:\n  enabled: false\n  shards: 6\n", File_);
        Assert.False(plain.IsReproducible);
        Assert.Null(plain.Reproducible);
        Assert.True(on.IsReproducible);
        Assert.Equal(new ReproducibleRecipe(true, 6), on.Reproducible);
        Assert.False(off.IsReproducible);
        Assert.Equal(2, on.Reproducible!.ShardSize(on.Batch.Global));
        Assert.Equal(6, on.MaxWorldSize);
        Assert.Equal(12, plain.MaxWorldSize);
        Assert.NotEqual(plain.Source.Hash, on.Source.Hash);
        Assert.NotEqual(off.Source.Hash, on.Source.Hash);
        foreach (var world in new[] { 1, 4, 5, 6 }) on.ValidateForWorldSize(world);   // 5 does not divide 12: shards 2, 1, 1, 1, 1
        var e = Assert.Throws<RecipeException>(() => on.ValidateForWorldSize(7));
        Assert.Contains("reproducible.shards", e.Message);
        Assert.Contains("7 workers", e.Message);
    }

    [Theory]
    [InlineData("reproducible:\n  enabled: true\n", "reproducible.shards: is required with enabled: true")]
    [InlineData("reproducible:\n  enabled: true\n  shards: 5\n", "reproducible.shards: 5 micro-shards cannot split batch.global 12 evenly")]
    [InlineData("reproducible:\n  enabled: true\n  shards: 0\n", "reproducible.shards: 0 is out of range")]
    [InlineData("reproducible:\n  enabled: true\n  shards: 6\n  threads: 2\n", "threads")]
    [InlineData("reproducible:\n  enabled: yes please\n  shards: 6\n", "reproducible.enabled")]
    [InlineData("reproducible:\n  enabled: true\n  shards: 4\nelastic:\n  max_workers: 6\n", "elastic.max_workers: 6 workers cannot each take one of 4 micro-shards")]
    public void A_reproducible_section_that_cannot_work_is_rejected_naming_the_field(string section, string expected) =>
        Assert.Contains(expected, Rejected(Tiny + "\n" + section).Message);

    [Fact]
    public void Reproducible_runs_refuse_accumulation_naming_the_field() =>
        Assert.Contains("batch.accumulation: is 2, but reproducible runs compute each micro-shard on its own",
            Rejected(TestRecipes.Set(Tiny, "global", "12\n  accumulation: 2") + "\nreproducible:\n  enabled: true\n  shards: 6\n").Message);
}
