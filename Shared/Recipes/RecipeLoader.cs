namespace Pretrain.Shared.Recipes;

/// <summary>Loads and validates a recipe file. Every error names the file and the field.</summary>
public static class RecipeLoader
{
    /// <summary>The methods the loop knows (brief, principle 7).</summary>
    public static readonly IReadOnlyList<string> Methods = ["gpt", "bert", "simclr", "moco", "byol", "mae"];

    public static readonly IReadOnlyList<string> VisionMethods = ["simclr", "moco", "byol", "mae"];
    public static readonly IReadOnlyList<string> Encoders = ["small-cnn", "resnet18"];
    public static readonly IReadOnlyList<string> Optimizers = ["adamw", "lars", "lamb", "sgd"];

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
        string Resolve(string relative) => System.IO.Path.GetFullPath(System.IO.Path.Combine(folder, relative));

        var method = root.String("method");
        if (!Methods.Contains(method))
            throw root.Fail("method", $"unknown method '{method}'; supported: {string.Join(", ", Methods)}");
        var vision = VisionMethods.Contains(method);
        var seed = root.Long("seed", 0);
        var steps = root.Long("steps", 1);

        var d = root.Section("data");
        DataRecipe data;
        if (vision)
        {
            d.Forbid("text", $"{method} trains on images: give data.images, a folder written by `pretrain prepare fashion-mnist` (or cifar10, images)");
            d.Forbid("tokens", $"{method} trains on images: give data.images, a folder written by `pretrain prepare fashion-mnist` (or cifar10, images)");
            var images = d.String("images");
            data = new ImageData(images, Resolve(images));
        }
        else
        {
            d.Forbid("images", $"{method} trains on text: give data.text, a UTF-8 text file, or data.tokens, a folder written by `pretrain prepare text`");
            if (d.Has("tokens"))
            {
                d.Forbid("text", "give data.text (a UTF-8 file, bytes as tokens) or data.tokens (a prepared folder), not both");
                d.Forbid("validation_fraction", "the validation split of data.tokens is the one `pretrain prepare text --validation-fraction` made");
                var tokens = d.String("tokens");
                data = new TokenData(tokens, Resolve(tokens));
            }
            else
            {
                var textFile = d.String("text");
                data = new TextData(textFile, Resolve(textFile), d.Double("validation_fraction", 0, 0.5, minExclusive: true));
            }
        }
        d.RejectUnknown();

        var m = root.Section("model");
        ModelRecipe model;
        if (method == "mae")
            model = ReadVisionTransformer(m);
        else if (vision)
        {
            var encoder = m.Choice("encoder", Encoders);
            var shape = new VisionModel(encoder, m.Int("projection_hidden", 1, 1 << 16, 512), m.Int("projection_dim", 1, 1 << 16, 128));
            if (encoder == "small-cnn")
                shape = shape with { Channels = m.Int("channels", 1, 1024, 32), FeatureGrid = m.Int("feature_grid", 1, 7, 2) };
            else
            {
                m.Forbid("channels", $"only small-cnn takes channels; {encoder} has a fixed width");
                m.Forbid("feature_grid", $"only small-cnn takes feature_grid; {encoder} pools globally");
            }
            model = shape;
        }
        else
        {
            var shape = new TransformerModel(m.Int("layers", 1, 1024), m.Int("heads", 1, 1024), m.Int("width", 1, 1 << 16),
                m.Int("context", 1, 1 << 20), m.Double("dropout", 0, 0.99));
            if (shape.Width % shape.Heads != 0)
                throw m.Fail("heads", $"width {shape.Width} is not divisible by heads {shape.Heads}");
            model = shape;
        }
        m.RejectUnknown();

        var options = ReadMethodOptions(root, method, model);

        AugmentRecipe? augment = null;
        if (vision)
        {
            var a = root.OptionalSection("augment");
            augment = new AugmentRecipe(a.Doubles("crop_scale", 2, 0, 1.0000001, [0.2, 1.0]), a.Double("flip_probability", 0, 1, 0.5),
                a.Double("jitter_probability", 0, 1, 0.8), a.Double("brightness", 0, 1, 0.4), a.Double("contrast", 0, 1, 0.4),
                a.Double("grayscale_probability", 0, 1, 0.2), a.Double("blur_probability", 0, 1, 0.0));
            if (!(augment.CropScale[0] > 0 && augment.CropScale[0] <= augment.CropScale[1]))
                throw a.Fail("crop_scale", $"expected [min, max] with 0 < min <= max <= 1, got [{augment.CropScale[0]}, {augment.CropScale[1]}]");
            a.RejectUnknown();
        }
        else
            root.Forbid("augment", $"{method} trains on text; augment is for {string.Join(", ", VisionMethods)}");

        var o = root.Section("optimizer");
        var name = o.Choice("name", Optimizers);
        var lr = o.Double("lr", 0, double.MaxValue, minExclusive: true);
        var minLr = o.Double("min_lr", 0, lr);
        double[] betas = [0.9, 0.999];
        double momentum = 0, eta = 0;
        if (name is "lars" or "sgd")
        {
            o.Forbid("betas", $"{name} takes momentum{(name == "lars" ? " (and eta)" : "")}, not betas");
            momentum = o.Double("momentum", 0, 0.999999, 0.9);
            if (name == "lars")
                eta = o.Double("eta", 0, 1, 0.001, minExclusive: true);
            else
                o.Forbid("eta", "eta is the trust coefficient of lars, not of sgd");
        }
        else
        {
            o.Forbid("momentum", $"{name} takes betas, not momentum");
            o.Forbid("eta", $"eta is the trust coefficient of lars, not of {name}");
            betas = o.Doubles("betas", 2, 0, 1, betas);
        }
        var optimizer = new OptimizerRecipe(name, lr, minLr, betas, momentum, eta,
            o.Double("eps", 0, 1, 1e-8, minExclusive: true), o.Double("weight_decay", 0, 10), o.Double("grad_clip", 0, double.MaxValue, 0));
        o.RejectUnknown();

        var s = root.Section("schedule");
        var schedule = new ScheduleRecipe(s.Long("warmup_steps", 0, steps));
        s.RejectUnknown();

        var b = root.Section("batch");
        var batch = new BatchRecipe(b.Int("global", 1), b.Int("accumulation", 1, 1 << 16, 1));
        if (batch.Global % batch.Accumulation != 0)
            throw b.Fail("accumulation", $"{batch.Accumulation} micro-steps cannot split batch.global {batch.Global} evenly");
        if (options is ContrastiveOptions { Kind: ContrastiveKind.MoCo, QueueSize: var queue } && queue % batch.Global != 0)
            throw root.Fail("moco.queue_size", $"{queue} is not a multiple of batch.global {batch.Global}: the queue advances by a whole global batch of keys per step");
        b.RejectUnknown();

        var c = root.Section("checkpoint");
        var checkpoint = new CheckpointRecipe(c.Long("every", 1), c.Int("keep", 1));
        c.RejectUnknown();

        var e = vision ? root.OptionalSection("eval") : root.Section("eval");
        EvalRecipe eval;
        if (vision)
        {
            e.Forbid("batches", $"{method} is evaluated by the kNN monitor on the test split; batches is for text methods");
            eval = new EvalRecipe(0, e.Long("every", 0, long.MaxValue, 0), e.Int("knn_k", 1, 100_000, 200),
                e.Double("knn_temperature", 0, 100, 0.07, minExclusive: true), e.Long("knn_train_samples", 0, long.MaxValue, 10_000));
        }
        else
        {
            e.Forbid("knn_k", "the kNN monitor is for vision methods");
            e.Forbid("knn_temperature", "the kNN monitor is for vision methods");
            e.Forbid("knn_train_samples", "the kNN monitor is for vision methods");
            eval = new EvalRecipe(e.Int("batches", 1), e.Long("every", 0, long.MaxValue, 0), 0, 0, 0);
        }
        e.RejectUnknown();

        // Read only when present, so recipes without it keep their hash (and their checkpoints).
        ElasticRecipe? elastic = null;
        if (root.Has("elastic"))
        {
            var x = root.Section("elastic");
            elastic = new ElasticRecipe(x.Int("min_workers", 1, 1 << 16, 1), x.Int("max_workers", 0, 1 << 16, 0),
                x.Double("wait", 0, 7 * 24 * 3600, 120));
            if (elastic.MaxWorkers > 0 && elastic.MaxWorkers < elastic.MinWorkers)
                throw x.Fail("max_workers", $"{elastic.MaxWorkers} is below min_workers {elastic.MinWorkers}");
            if (elastic.MaxWorkers > batch.Global / batch.Accumulation)
                throw x.Fail("max_workers", $"{elastic.MaxWorkers} workers cannot each take a sample of a micro-step of {batch.Global / batch.Accumulation}");
            x.RejectUnknown();
        }

        // Read only when present, as elastic: recipes without it keep their hash.
        ReproducibleRecipe? reproducible = null;
        if (root.Has("reproducible"))
        {
            var r = root.Section("reproducible");
            var enabled = r.Bool("enabled", false);
            if (enabled && !r.Has("shards"))
                throw r.Fail("shards", "is required with enabled: true: the number of micro-shards (a divisor of batch.global) bounds the world size");
            reproducible = new ReproducibleRecipe(enabled, r.Int("shards", 1, ReproducibleRecipe.MaxShards, 1));
            if (batch.Global % reproducible.Shards != 0)
                throw r.Fail("shards", $"{reproducible.Shards} micro-shards cannot split batch.global {batch.Global} evenly; use a divisor of it");
            if (enabled && batch.Accumulation != 1)
                throw b.Fail("accumulation", $"is {batch.Accumulation}, but reproducible runs compute each micro-shard on its own already; remove accumulation or set it to 1");
            if (enabled && elastic is { MaxWorkers: > 0 } && elastic.MaxWorkers > reproducible.Shards)
                throw root.Fail("elastic.max_workers", $"{elastic.MaxWorkers} workers cannot each take one of {reproducible.Shards} micro-shards");
            r.RejectUnknown();
        }

        var onNonFinite = root.Choice("on_nonfinite_loss", ["stop", "skip"], "stop") == "skip" ? NonFiniteLoss.Skip : NonFiniteLoss.Stop;
        root.RejectUnknown();

        var recipe = new Recipe(method, seed, steps, data, model, options, augment, optimizer, schedule, batch, checkpoint, eval,
            onNonFinite, new RecipeSource(path, text, RecipeHash.Of(root.Values)), elastic, reproducible);
        return recipe;
    }

    /// <summary>The section named after the method, with the reference defaults; other methods' sections are refused.</summary>
    private static MethodRecipe ReadMethodOptions(YamlSection root, string method, ModelRecipe model)
    {
        foreach (var other in Methods.Where(x => x != method && x != "gpt"))
            root.Forbid(other, $"this recipe's method is {method}; the {other} section belongs to method {other}");
        root.Forbid("gpt", "gpt has no settings of its own");
        if (method == "gpt")
            return new CausalLmOptions();

        var section = root.OptionalSection(method);
        MethodRecipe options = method switch
        {
            "bert" => ReadMaskedLm(section),
            "mae" => ReadMae(section),
            "simclr" => new ContrastiveOptions(ContrastiveKind.SimClr, section.Double("temperature", 0, 100, 0.1, minExclusive: true),
                section.Bool("global_batch_norm", true), 0, 0),
            "moco" => new ContrastiveOptions(ContrastiveKind.MoCo, section.Double("temperature", 0, 100, 0.2, minExclusive: true), false,
                section.Int("queue_size", 1, 1 << 24, 65536), section.Double("momentum", 0, 1, 0.999)),
            // BYOL's predictor is as wide as its projector (4096 both): the default follows model.projection_hidden.
            "byol" => new ByolOptions(section.Double("momentum_base", 0, 1, 0.99),
                section.Int("predictor_hidden", 1, 1 << 16, ((VisionModel)model).ProjectionHidden), section.Bool("global_batch_norm", true)),
            _ => throw new InvalidOperationException($"method {method} has no section reader"),
        };
        section.RejectUnknown();
        return options;
    }

    /// <summary>MAE's ViT encoder (<c>model:</c>); whether the patch size divides the images is checked by the worker, which sees them.</summary>
    private static VisionTransformerModel ReadVisionTransformer(YamlSection m)
    {
        var shape = new VisionTransformerModel(m.Int("patch_size", 1, 1024), m.Int("layers", 1, 1024), m.Int("heads", 1, 1024), m.Int("width", 4, 1 << 16),
            m.Int("feature_grid", 1, 1024, 2));
        if (shape.Width % 4 != 0)
            throw m.Fail("width", $"{shape.Width} is not a multiple of 4: the 2-D sin-cos positions give a quarter of it to each of sin/cos of row/column");
        if (shape.Width % shape.Heads != 0)
            throw m.Fail("heads", $"width {shape.Width} is not divisible by heads {shape.Heads}");
        return shape;
    }

    private static MaeOptions ReadMae(YamlSection section)
    {
        var options = new MaeOptions(section.Double("mask_ratio", 0, 1, 0.75, minExclusive: true), section.Int("decoder_width", 4, 1 << 16, 128),
            section.Int("decoder_layers", 1, 1024, 1), section.Int("decoder_heads", 1, 1024, 4), section.Bool("norm_pix_loss", true));
        if (options.MaskRatio >= 1)
            throw section.Fail("mask_ratio", $"{options.MaskRatio} hides every patch; the encoder must see some (MAE: 0.75)");
        if (options.DecoderWidth % 4 != 0)
            throw section.Fail("decoder_width", $"{options.DecoderWidth} is not a multiple of 4: the 2-D sin-cos positions give a quarter of it to each of sin/cos of row/column");
        if (options.DecoderWidth % options.DecoderHeads != 0)
            throw section.Fail("decoder_heads", $"decoder_width {options.DecoderWidth} is not divisible by decoder_heads {options.DecoderHeads}");
        return options;
    }

    private static MaskedLmOptions ReadMaskedLm(YamlSection section)
    {
        var options = new MaskedLmOptions(section.Double("mask_probability", 0, 1, 0.15, minExclusive: true),
            section.Double("mask_token_fraction", 0, 1, 0.8), section.Double("random_token_fraction", 0, 1, 0.1));
        if (options.MaskTokenFraction + options.RandomTokenFraction > 1)
            throw section.Fail("random_token_fraction",
                $"mask_token_fraction {options.MaskTokenFraction} + random_token_fraction {options.RandomTokenFraction} exceeds 1");
        return options;
    }
}
