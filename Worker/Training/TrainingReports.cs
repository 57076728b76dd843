namespace Pretrain.Worker.Training;

/// <summary>What one completed step reports (same values on every rank: the loss is the global mean).</summary>
public sealed record StepReport(
    long Step,               // steps completed, 1-based
    double Loss,             // global mean training loss of the step
    double LearningRate,     // LR the step used
    double GradientNorm,     // global L2 norm of the averaged gradient, before clipping
    double SamplesPerSecond, // global batch / wall time of the step
    double AllReduceSeconds = 0,        // time the step's gradient buckets were being reduced; 0: nothing crossed the network
    double HiddenAllReduceSeconds = 0); // the part of it that ran while backward went on (the step waited for the rest)

/// <summary>The outcome of <see cref="Trainer.RunAsync"/>.</summary>
public sealed record TrainingResult(
    long Step,                                // steps completed
    double FinalLoss,                         // global mean loss of the last step
    double SamplesPerSecond,                  // global samples / wall time, over the steps this run executed
    string ReplicaChecksum,                   // xxHash64 of all parameters and replicated method state (see ReplicaChecksum); equal on all ranks
    IReadOnlyDictionary<string, double> Eval, // the method's evaluation: GPT "val_loss", "bits_per_byte", "perplexity"; …
    double Mfu,                               // model FLOPs utilization over the steps this run executed (0 if none)
    double FirstLoss,                         // global mean loss of the first step this run executed (NaN if none)
    string SampleDigest = "");                // chained xxHash64 of every committed step's sample ids (Trainer.SampleDigest)

/// <summary>The loss became NaN or infinite; nothing of that step was applied or saved.</summary>
public sealed class TrainingDivergedException(long step, double loss, double gradientNorm, string? lastCheckpoint)
    : Exception($"training diverged at step {step}: global loss is {loss}, gradient norm {gradientNorm}; the weights were not updated and " +
                (lastCheckpoint is null ? "no checkpoint was written yet" : $"the last good checkpoint is {lastCheckpoint}"))
{
    public long Step { get; } = step;
}
