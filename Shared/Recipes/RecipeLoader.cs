namespace Pretrain.Shared.Recipes;

/// <summary>Loads and validates a recipe file. Every error names the file and the field.</summary>
public static class RecipeLoader
{
    /// <summary>Methods the loop knows; SimCLR, MoCo and BERT join as plug-ins later (brief, principle 7).</summary>
    public static readonly IReadOnlyList<string> Methods = ["gpt"];

    public static Recipe Load(string file)
    {
        var path = System.IO.Path.GetFullPath(file);
        if (!File.Exists(path))
            throw new RecipeException(path, "(file)", "recipe file not found");
        return Parse(File.ReadAllText(path), path);
    }

    /// <summary>Parses recipe text; <paramref name="path"/> names it in errors and anchors relative data paths.</summary>
    public static Recipe Parse(string text, string path)
    {
        var root = YamlSection.Root(path, text);
        var folder = System.IO.Path.GetDirectoryName(path) ?? ".";

        var method = root.String("method");
        if (!Methods.Contains(method))
            throw root.Fail("method", $"unknown method '{method}'; supported: {string.Join(", ", Methods)}");
        var seed = root.Long("seed", 0);
        var steps = root.Long("steps", 1);

        var d = root.Section("data");
        var textFile = d.String("text");
        var data = new DataRecipe(textFile, System.IO.Path.GetFullPath(System.IO.Path.Combine(folder, textFile)),
            d.Double("validation_fraction", 0, 0.5, minExclusive: true));
        d.RejectUnknown();

        var m = root.Section("model");
        var model = new ModelRecipe(m.Int("layers", 1, 1024), m.Int("heads", 1, 1024), m.Int("width", 1, 1 << 16),
            m.Int("context", 1, 1 << 20), m.Double("dropout", 0, 0.99));
        if (model.Width % model.Heads != 0)
            throw m.Fail("heads", $"width {model.Width} is not divisible by heads {model.Heads}");
        m.RejectUnknown();

        var o = root.Section("optimizer");
        var name = o.String("name");
        if (name != "adamw")
            throw o.Fail("name", $"unknown optimizer '{name}'; supported: adamw");
        var lr = o.Double("lr", 0, double.MaxValue, minExclusive: true);
        var optimizer = new OptimizerRecipe(name, lr, o.Double("min_lr", 0, lr), o.Doubles("betas", 2, 0, 1),
            o.Double("eps", 0, 1, minExclusive: true), o.Double("weight_decay", 0, 10), o.Double("grad_clip", 0, double.MaxValue));
        o.RejectUnknown();

        var s = root.Section("schedule");
        var schedule = new ScheduleRecipe(s.Long("warmup_steps", 0, steps));
        s.RejectUnknown();

        var b = root.Section("batch");
        var batch = new BatchRecipe(b.Int("global", 1));
        b.RejectUnknown();

        var c = root.Section("checkpoint");
        var checkpoint = new CheckpointRecipe(c.Long("every", 1), c.Int("keep", 1));
        c.RejectUnknown();

        var e = root.Section("eval");
        var eval = new EvalRecipe(e.Int("batches", 1));
        e.RejectUnknown();
        root.RejectUnknown();

        var recipe = new Recipe(method, seed, steps, data, model, optimizer, schedule, batch, checkpoint, eval,
            new RecipeSource(path, text, ""));
        return recipe with { Source = recipe.Source with { Hash = RecipeHash.Of(recipe) } };
    }
}
