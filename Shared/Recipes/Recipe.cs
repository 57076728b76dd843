namespace Pretrain.Shared.Recipes;

// One recipe file describes a job (brief, principle 8). The records mirror the YAML one to one;
// keys are the snake_case of the property names (`validation_fraction` ↔ ValidationFraction).

/// <summary>A validated job description, as loaded by <see cref="RecipeLoader"/>.</summary>
public sealed record Recipe(
    string Method,               // pretraining method; "gpt" (causal language modelling) for now
    long Seed,                   // seeds init, sample order and dropout; same seed ⇒ same run
    long Steps,                  // total optimizer steps; the LR schedule spans these (--max-steps only stops early)
    DataRecipe Data,             // where the samples come from
    ModelRecipe Model,           // network shape
    OptimizerRecipe Optimizer,   // AdamW settings
    ScheduleRecipe Schedule,     // warmup, then cosine decay to optimizer.min_lr over `steps`
    BatchRecipe Batch,           // global batch, split over ranks
    CheckpointRecipe Checkpoint, // how often to write checkpoints and how many to keep
    EvalRecipe Eval,             // end-of-run evaluation
    RecipeSource Source)         // the file it came from (not a YAML key)
{
    /// <summary>
    /// Checks the combinations that depend on the world size, known only at rendezvous: the global
    /// batch must split evenly so every rank gets the same share (and changing W keeps the batch).
    /// </summary>
    public void ValidateForWorldSize(int worldSize)
    {
        if (worldSize < 1)
            throw new RecipeException(Source.Path, "world size", $"must be at least 1, got {worldSize}");
        if (Batch.Global % worldSize != 0)
            throw new RecipeException(Source.Path, "batch.global",
                $"{Batch.Global} is not divisible by the world size {worldSize}; pick a multiple of {worldSize}");
    }
}

/// <summary>Training text. Bytes are the tokens (vocabulary 256).</summary>
public sealed record DataRecipe(
    string Text,                 // UTF-8 text file as written in the recipe (relative to the recipe's folder)
    string TextPath,             // Text resolved to an absolute path (not a YAML key)
    double ValidationFraction);  // share of the file's tail held out for evaluation, in (0, 0.5]

/// <summary>GPT shape (nanoGPT's names: n_layer, n_head, n_embd, block_size).</summary>
public sealed record ModelRecipe(
    int Layers,      // transformer blocks
    int Heads,       // attention heads; must divide width
    int Width,       // embedding width (n_embd)
    int Context,     // tokens per sample (block_size)
    double Dropout); // dropout probability in [0, 1); 0 turns dropout off

/// <summary>AdamW with decoupled weight decay and global-norm gradient clipping.</summary>
public sealed record OptimizerRecipe(
    string Name,        // "adamw" (the only one for now)
    double Lr,          // peak learning rate, reached at the end of warmup
    double MinLr,       // floor of the cosine decay, in [0, lr]
    double[] Betas,     // [beta1, beta2], each in [0, 1)
    double Eps,         // added to sqrt(v) for stability, > 0
    double WeightDecay, // decoupled decay on matrix weights, >= 0
    double GradClip);   // max global L2 norm of the gradient; 0 turns clipping off

/// <summary>LR schedule: linear warmup from 0 then cosine to min_lr at `steps`.</summary>
public sealed record ScheduleRecipe(
    long WarmupSteps); // steps of linear warmup, in [0, steps]

/// <summary>Batch sizes, in samples.</summary>
public sealed record BatchRecipe(
    int Global); // samples per step over all ranks; each rank takes global / world_size

/// <summary>Checkpoint policy; rank 0 writes, atomically.</summary>
public sealed record CheckpointRecipe(
    long Every, // write every N steps (and at the end)
    int Keep);  // keep the newest K checkpoints, delete older ones

/// <summary>Evaluation at the end of the run on the held-out tail.</summary>
public sealed record EvalRecipe(
    int Batches); // validation batches of batch.global samples each

/// <summary>Where a recipe came from: the file, its text (saved into checkpoints) and its hash.</summary>
public sealed record RecipeSource(
    string Path,  // absolute path of the recipe file
    string Text,  // the file's full text, verbatim
    string Hash); // xxHash64 (16 hex digits) of the normalized recipe, see RecipeHash
