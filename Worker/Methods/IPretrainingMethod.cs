using Pretrain.Shared.Recipes;
using Pretrain.Worker.Collectives;
using Pretrain.Worker.Training;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pretrain.Worker.Methods;

/// <summary>
/// A pretraining method as a plug-in over the one training loop (brief, principle 7): it says how a
/// batch becomes a loss and its gradient, what state it keeps beyond its trained parameters, and which
/// collectives it needs in its forward pass (all-gathered embeddings, keys, batch-norm statistics). The
/// loop owns everything else: sample order, gradient averaging, clipping, the optimizer and schedule,
/// non-finite losses, checkpoints, metrics and when to evaluate.
/// <para>
/// Every call runs on the training thread (<see cref="Training.TrainingThread"/>), whose
/// synchronization context brings each await back to that thread, so a method may hold dispose scopes
/// and grad mode across the awaits of its collectives.
/// </para>
/// </summary>
public interface IPretrainingMethod : IDisposable
{
    /// <summary>
    /// The trained parameters, ordered by ordinal name and so the same on every rank: the order of the
    /// optimizer state, the gradient buckets, the replica checksum and the checkpoint.
    /// </summary>
    IReadOnlyList<(string Name, Parameter Parameter)> Parameters { get; }

    /// <summary>
    /// Whether weight decay (and, for LARS/LAMB, the trust-ratio adaptation) applies to a parameter:
    /// SimCLR and MoCo exclude biases and batch-norm parameters; transformers also their LayerNorms and
    /// embeddings.
    /// </summary>
    bool Decays(string name, Tensor parameter);

    /// <summary>
    /// State that is not trained by the optimizer but is part of the replica and of every checkpoint,
    /// by name disjoint from <see cref="Parameters"/>: batch-norm running statistics, MoCo's key encoder,
    /// queue and queue position. Resume copies the saved values into these tensors in place.
    /// </summary>
    IReadOnlyList<(string Name, Tensor Tensor)> State { get; }

    /// <summary>Training samples the global sampler draws from (ids 0 … TrainSamples − 1).</summary>
    long TrainSamples { get; }

    /// <summary>
    /// Forward and backward of this rank's micro-batch, adding its gradient into <c>.grad</c>. The loop
    /// averages the gradients of all micro-steps and ranks afterwards, so the method differentiates the
    /// mean loss of its own micro-batch (a method whose loss couples ranks, like SimCLR's global NT-Xent,
    /// scales its gradient so that this average is the gradient of the global loss). Returns that
    /// micro-batch's mean loss, which the loop averages the same way.
    /// </summary>
    Task<double> ForwardBackwardAsync(MicroBatch batch, CancellationToken ct);

    /// <summary>
    /// After the optimizer applied step <paramref name="step"/> (not called for a skipped step): MoCo's
    /// momentum update of the key encoder and its enqueue.
    /// </summary>
    void AfterUpdate(long step);

    /// <summary>
    /// Evaluates the current replica; every rank calls it at the same step and the result is the same on
    /// every rank. Names are snake_case (<c>val_loss</c>, <c>knn_accuracy</c>, …) and become
    /// <c>summary.json</c>'s <c>eval</c> and the <c>pretrain_eval{metric=…}</c> gauge.
    /// </summary>
    Task<IReadOnlyDictionary<string, double>> EvaluateAsync(CancellationToken ct);

    /// <summary>Training FLOPs per sample (forward and backward) for MFU; 0 when the method does not report MFU.</summary>
    double FlopsPerSample { get; }
}

/// <summary>
/// One rank's share of one micro-step: the step, which micro-step of how many, and its sample ids (in
/// global sample order, the same ids whatever the world size — brief, principle 4).
/// </summary>
public readonly record struct MicroBatch(long Step, int MicroStep, int MicroSteps, ReadOnlyMemory<long> SampleIds);

/// <summary>What a method is built from: the recipe, this rank's place in the ring and the ring itself.</summary>
public sealed record MethodContext(
    Recipe Recipe,
    int Rank,
    int WorldSize,
    ICollectives Collectives,
    TimeSpan CollectiveTimeout, // for collectives a method must run synchronously (global batch norm)
    StepPhases Phases,          // the method marks the end of its data, forward and backward work
    Action<string> Log);

/// <summary>A method whose encoder gives frozen features to evaluate (<c>pretrain eval</c>): SimCLR and MoCo.</summary>
public interface IRepresentationMethod : IPretrainingMethod
{
    /// <summary>Features of <paramref name="images"/> (B, C, H, W) float in [0, 1] by the encoder in eval mode, without the projection head: (B, d).</summary>
    Tensor Features(Tensor images);
}
