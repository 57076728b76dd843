namespace Pretrain.Shared.Recipes;

// One recipe file describes a job (brief, principle 8). The records mirror the YAML: keys are the
// snake_case of the property names (`validation_fraction` ↔ ValidationFraction). Sections that depend on
// the method are small unions: a text method has TextData and a TransformerModel, a vision method
// ImageData, a VisionModel (MAE: a VisionTransformerModel) and an Augment section; the method's own knobs
// live in a section named after it (`simclr:`, `moco:`, `byol:`, `bert:`, `mae:`; GPT has none).

/// <summary>A validated job description, as loaded by <see cref="RecipeLoader"/>.</summary>
public sealed record Recipe(
    string Method,                 // pretraining method: gpt, bert, simclr, moco, byol or mae (RecipeLoader.Methods)
    long Seed,                     // seeds init, sample order, augmentations, masking and dropout; same seed ⇒ same run
    long Steps,                    // total optimizer steps; the LR schedule spans these (--max-steps only stops early)
    DataRecipe Data,               // where the samples come from
    ModelRecipe Model,             // network shape
    MethodRecipe Options,          // the method's own settings (temperature, queue, masking…)
    AugmentRecipe? Augment,        // vision methods only: how an image becomes a view
    OptimizerRecipe Optimizer,     // AdamW, LARS, LAMB or momentum SGD
    ScheduleRecipe Schedule,       // warmup, then cosine decay to optimizer.min_lr over `steps`
    BatchRecipe Batch,             // global batch, split over ranks and micro-steps
    CheckpointRecipe Checkpoint,   // how often to write checkpoints and how many to keep
    EvalRecipe Eval,               // evaluation during and at the end of the run
    NonFiniteLoss OnNonFiniteLoss, // `on_nonfinite_loss`: stop (default) or skip the step
    RecipeSource Source,           // the file it came from (not a YAML key)
    ElasticRecipe? Elastic = null, // `elastic:`: how the job survives lost and new workers
    ReproducibleRecipe? Reproducible = null) // `reproducible:`: the same weights whatever the world size
{
    /// <summary>Whether the run is bit-identical whatever the world size (<c>reproducible.enabled</c>).</summary>
    public bool IsReproducible => Reproducible is { Enabled: true };

    /// <summary>
    /// The most workers the batch can feed: one micro-shard each when reproducible, else one sample of every
    /// micro-step each.
    /// </summary>
    public int MaxWorldSize => IsReproducible ? Reproducible!.Shards : MicroGlobal;

    /// <summary>The elastic bounds, with their defaults when the recipe has no <c>elastic:</c> section.</summary>
    public ElasticRecipe ElasticOrDefault => Elastic ?? ElasticRecipe.Default;

    /// <summary>GPT and BERT read text; SimCLR, MoCo, BYOL and MAE read images.</summary>
    public bool IsVision => Data is ImageData;

    /// <summary>The transformer shape of a text method.</summary>
    public TransformerModel Transformer => Model as TransformerModel
        ?? throw new InvalidOperationException($"method {Method} has no transformer model");

    /// <summary>Samples of one micro-step over all ranks: global / accumulation. Ranks share it, differing by at most one.</summary>
    public int MicroGlobal => Batch.Global / Batch.Accumulation;

    /// <summary>Samples each rank computes in one micro-step when the world size divides the micro-step (tests).</summary>
    public int MicroBatch(int worldSize) => MicroGlobal / worldSize;

    /// <summary>
    /// Checks the combinations that depend on the world size, known only at rendezvous. Any world size keeps
    /// the global batch (shares of ranks differ by at most one sample), as long as every rank gets at least
    /// one sample of every micro-step.
    /// </summary>
    public void ValidateForWorldSize(int worldSize)
    {
        if (worldSize < 1)
            throw new RecipeException(Source.Path, "world size", $"must be at least 1, got {worldSize}");
        if (IsReproducible && worldSize > Reproducible!.Shards)
            throw new RecipeException(Source.Path, "reproducible.shards",
                $"{Reproducible.Shards} micro-shards leave {worldSize} workers less than one each; use at most {Reproducible.Shards} workers or more shards");
        if (worldSize > MicroGlobal)
            throw new RecipeException(Source.Path, "batch.global",
                $"{Batch.Global} samples in {Batch.Accumulation} micro-step(s) leave {worldSize} workers less than one sample each; use at most {MicroGlobal} workers or a larger batch");
    }
}

/// <summary>Elastic training: the job goes on while workers are lost or join (brief, principle 5).</summary>
public sealed record ElasticRecipe(
    int MinWorkers,      // the job waits (up to wait) for newcomers when fewer remain; default 1
    int MaxWorkers,      // newcomers are admitted up to this many workers; 0 = the world size the job started with
    double WaitSeconds)  // how long the job waits below min_workers before it fails naming the last checkpoint; default 120
{
    public static readonly ElasticRecipe Default = new(1, 0, 120);
}

/// <summary>
/// Bit-identical training (<c>reproducible:</c>): the global batch is cut into <see cref="Shards"/> micro-shards
/// of consecutive samples, each computed on its own, and their gradients are summed exactly, so the final
/// weights are a function of (recipe, seed, steps) alone, whatever the world size and through any regroup.
/// </summary>
public sealed record ReproducibleRecipe(
    bool Enabled, // on: the exact path; off (default): the fast path
    int Shards)   // micro-shards per global batch: divides batch.global, bounds the world size
{
    /// <summary>The exact sum keeps log2(shards) bits of headroom (Worker/Training/Reproducible/FixedPoint.cs); 2^16 leaves 46 bits of precision.</summary>
    public const int MaxShards = 1 << 16;

    /// <summary>Samples of one micro-shard.</summary>
    public int ShardSize(int globalBatch) => globalBatch / Shards;
}

/// <summary>What to do when a step's global loss or gradient norm is NaN or infinite.</summary>
public enum NonFiniteLoss
{
    Stop, // fail the job with the step named; the last good checkpoint stays intact (default)
    Skip, // drop the step's update, count it in pretrain_skipped_steps_total, go on
}

/// <summary>Training data: a text file or a prepared token folder (text methods), or a prepared image folder (vision methods).</summary>
public abstract record DataRecipe;

/// <summary>UTF-8 text; bytes are the tokens (vocabulary 256, plus BERT's special tokens above it).</summary>
public sealed record TextData(
    string Text,                 // UTF-8 text file as written in the recipe (relative to the recipe's folder)
    string TextPath,             // Text resolved to an absolute path (not a YAML key)
    double ValidationFraction)   // share of the file's tail held out for evaluation, in (0, 0.5]
    : DataRecipe;

/// <summary>
/// A folder written by <c>pretrain prepare text</c>: token shards (byte, cl100k_base or o200k_base ids, compacted
/// or not), packed into one stream per split with [SEP] between documents; the validation split is the preparation's.
/// </summary>
public sealed record TokenData(
    string Tokens,               // the prepared folder as written in the recipe (relative to the recipe's folder)
    string TokensPath)           // Tokens resolved to an absolute path (not a YAML key)
    : DataRecipe;

/// <summary>A folder written by <c>pretrain prepare fashion-mnist|cifar10|images</c>: index.json and shards.</summary>
public sealed record ImageData(
    string Images,               // the prepared folder as written in the recipe (relative to the recipe's folder)
    string ImagesPath)           // Images resolved to an absolute path (not a YAML key)
    : DataRecipe;

/// <summary>Network shape.</summary>
public abstract record ModelRecipe;

/// <summary>A transformer (nanoGPT's names: n_layer, n_head, n_embd, block_size): decoder for GPT, encoder for BERT.</summary>
public sealed record TransformerModel(
    int Layers,      // transformer blocks
    int Heads,       // attention heads; must divide width
    int Width,       // embedding width (n_embd)
    int Context,     // tokens per sample (block_size)
    double Dropout)  // dropout probability in [0, 1); 0 turns dropout off
    : ModelRecipe;

/// <summary>An image encoder and the MLP projection head of SimCLR / MoCo v2 / BYOL.</summary>
public sealed record VisionModel(
    string Encoder,        // small-cnn or resnet18 (small-image stem)
    int ProjectionHidden,  // hidden width of the projection MLP
    int ProjectionDim,     // output width of the projection MLP (the contrastive embedding)
    int Channels = 32,     // small-cnn: channels of its first stage (the next two have 2x and 4x)
    int FeatureGrid = 2)   // small-cnn: the last stage is average-pooled to this grid; features = 4 x channels x grid²
    : ModelRecipe;

/// <summary>
/// MAE's encoder, a Vision Transformer (Dosovitskiy et al. 2021) without a class token: square patches, a linear
/// patch embedding, fixed 2-D sin-cos positions, pre-LayerNorm blocks. GPT's names for the transformer's shape.
/// </summary>
public sealed record VisionTransformerModel(
    int PatchSize, // side of a square patch in pixels; must divide the image side (4 or 7 for 28-px images)
    int Layers,    // transformer blocks
    int Heads,     // attention heads; must divide width
    int Width,     // token width; a multiple of 4, as the 2-D sin-cos positions give a quarter each to sin/cos of row/column
    int FeatureGrid = 2) // the probe's features: the last block's tokens average-pooled to this grid of image regions; width x grid²
    : ModelRecipe;

/// <summary>The method's own settings.</summary>
public abstract record MethodRecipe;

/// <summary>GPT causal language modelling has no settings of its own.</summary>
public sealed record CausalLmOptions : MethodRecipe;

/// <summary>BERT masked language modelling (Devlin et al. 2019, §3.1).</summary>
public sealed record MaskedLmOptions(
    double MaskProbability,     // share of tokens chosen for prediction (BERT: 0.15)
    double MaskTokenFraction,   // of those, replaced by [MASK] (0.8)
    double RandomTokenFraction) // of those, replaced by a random token (0.1); the rest stay unchanged
    : MethodRecipe;

/// <summary>Masked autoencoder (He et al. 2022), section `mae:`.</summary>
public sealed record MaeOptions(
    double MaskRatio,  // share of each image's patches hidden from the encoder, in (0, 1) (MAE: 0.75)
    int DecoderWidth,  // token width of the light decoder; a multiple of 4 (MAE: 512 beside a ViT-L of 1024)
    int DecoderLayers, // decoder blocks (MAE: 8; its ablation finds 1 block enough for features that are probed)
    int DecoderHeads,  // decoder attention heads; must divide decoder_width
    bool NormPixLoss)  // targets are each patch's pixels standardised by its own mean and deviation (MAE's default: better features)
    : MethodRecipe;

public enum ContrastiveKind { SimClr, MoCo }

/// <summary>SimCLR (section `simclr:`) or MoCo v2 (section `moco:`).</summary>
public sealed record ContrastiveOptions(
    ContrastiveKind Kind,
    double Temperature,     // softmax temperature τ (SimCLR 0.1–0.5, MoCo v2 0.2)
    bool GlobalBatchNorm,   // SimCLR: batch-norm statistics over the global batch (all workers)
    int QueueSize,          // MoCo: keys in the queue (K); 0 for SimCLR
    double Momentum)        // MoCo: EMA coefficient of the key encoder (0.99–0.999); 0 for SimCLR
    : MethodRecipe;

/// <summary>
/// BYOL (section `byol:`; Grill et al. 2020): an online network (encoder, projector, predictor) regresses the
/// projection of the other view by a target network, an average of the online one that no gradient trains.
/// </summary>
public sealed record ByolOptions(
    double MomentumBase,  // τ_base: the target's EMA coefficient at step 0, rising on a cosine to 1 at `steps` (BYOL: 0.996)
    int PredictorHidden,  // hidden width of the predictor Linear(d, h)-BN-ReLU-Linear(h, d); default model.projection_hidden, as BYOL
    bool GlobalBatchNorm) // batch-norm statistics over the global batch (all workers), as SimCLR's; false = per worker
    : MethodRecipe;

/// <summary>How an image becomes a view (SimCLR appendix A, sized for small images).</summary>
public sealed record AugmentRecipe(
    double[] CropScale,          // [min, max] area fraction of the random resized crop
    double FlipProbability,      // horizontal flip
    double JitterProbability,    // brightness/contrast jitter applied with this probability
    double Brightness,           // factor drawn in [1 − b, 1 + b]
    double Contrast,             // factor drawn in [1 − c, 1 + c]
    double GrayscaleProbability, // colour images only
    double BlurProbability);     // Gaussian blur, σ in [0.1, 2]

/// <summary>AdamW, LARS, LAMB or momentum SGD, with global-norm gradient clipping.</summary>
public sealed record OptimizerRecipe(
    string Name,        // adamw, lars, lamb or sgd
    double Lr,          // peak learning rate, reached at the end of warmup
    double MinLr,       // floor of the cosine decay, in [0, lr]
    double[] Betas,     // adamw/lamb: [beta1, beta2], each in [0, 1)
    double Momentum,    // lars/sgd: heavy-ball momentum in [0, 1)
    double Eta,         // lars: trust coefficient η
    double Eps,         // added to denominators for stability, > 0
    double WeightDecay, // >= 0 (decoupled for adamw/lamb, L2 for lars/sgd); never on biases and norms (see the method's exclusions)
    double GradClip);   // max global L2 norm of the gradient; 0 turns clipping off

/// <summary>LR schedule: linear warmup from 0 then cosine to min_lr at `steps`.</summary>
public sealed record ScheduleRecipe(
    long WarmupSteps); // steps of linear warmup, in [0, steps]

/// <summary>Batch sizes, in samples.</summary>
public sealed record BatchRecipe(
    int Global,        // samples per optimizer step over all ranks; each rank takes global / world_size
    int Accumulation); // micro-steps per step (default 1); gradients cross the network only after the last

/// <summary>Checkpoint policy; rank 0 writes, atomically.</summary>
public sealed record CheckpointRecipe(
    long Every, // write every N steps (and at the end)
    int Keep);  // keep the newest K checkpoints, delete older ones

/// <summary>Evaluation: text methods on the held-out tail, vision methods by a kNN monitor on the test split.</summary>
public sealed record EvalRecipe(
    int Batches, // text: validation batches of batch.global samples at the end; vision: 0 (unused)
    long Every,  // evaluate every N steps as well as at the end; 0 = only at the end
    int KnnK,    // vision: neighbours of the kNN monitor (200)
    double KnnTemperature, // vision: temperature of its weighted vote (0.07)
    long KnnTrainSamples); // vision: the monitor's neighbours come from the first N training images (0 = all); `pretrain eval` uses all

/// <summary>Where a recipe came from: the file, its text (saved into checkpoints) and its hash.</summary>
public sealed record RecipeSource(
    string Path,  // absolute path of the recipe file
    string Text,  // the file's full text, verbatim
    string Hash); // xxHash64 (16 hex digits) of the normalized recipe, see RecipeHash
