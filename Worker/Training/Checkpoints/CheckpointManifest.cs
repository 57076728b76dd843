using System.Text.Json;
using System.Text.Json.Serialization;

namespace Pretrain.Worker.Training.Checkpoints;

/// <summary>
/// <c>manifest.json</c> of a checkpoint directory: what it holds and how to verify it. Written last,
/// inside the temporary directory, before the rename that publishes the checkpoint.
/// </summary>
public sealed record CheckpointManifest(
    int FormatVersion,                    // 1; bumped when files or layouts change
    long Step,                            // optimizer steps completed
    string RecipeHash,                    // RecipeHash of the job; resume refuses a different one
    int WorldSize,                        // ranks that trained up to here (informational: W may change)
    IReadOnlyList<CheckpointFile> Files)  // every other file of the directory
{
    public const int CurrentFormat = 1;
    public const string FileName = "manifest.json";

    internal static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals, // a skipped step's loss is NaN
    };
}

/// <summary>One file of a checkpoint: its plain name in the checkpoint's directory, its size in bytes and xxHash64 (16 hex digits).</summary>
public sealed record CheckpointFile(string Name, long Size, string Xxhash64);

/// <summary>
/// <c>training_state.json</c>: the loop's position. With a counter-based RNG, (seed, step) is the whole RNG
/// state; with the sampler's pure order, (step, epoch) is the whole data position.
/// </summary>
public sealed record TrainingState(
    long Step,           // next step to run = steps completed
    long Epoch,          // epoch of the next step's first sample (informational; derived from step)
    long OptimizerStep,  // AdamW's t
    double LearningRate, // LR of the last completed step (informational; the schedule is pure)
    long Seed,           // the recipe's seed; dropout uses (seed, step, rank)
    double Loss,         // global mean loss of the last completed step
    string SampleDigest = "",  // chained xxHash64 of the sample ids of every committed step (summary.json's sample_digest)
    // The whole job's figures across resumes (summary.json): the first step's loss of the job's first segment, and the
    // throughput of the segment that wrote this checkpoint (carried when a resume runs no step). Null in older checkpoints.
    double? FirstLoss = null,
    double? SamplesPerSecond = null);
