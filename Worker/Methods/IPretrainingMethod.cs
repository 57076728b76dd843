using Pretrain.Shared.Recipes;
using Pretrain.Worker.Collectives;
using Pretrain.Worker.Models.Layers;
using Pretrain.Worker.Training;
using Pretrain.Worker.Training.Reproducible;
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

    /// <summary>
    /// The part of <see cref="State"/> that every rank holds bit for bit alike after every step because each rank
    /// derives it the same way from the parameters (BYOL's target network, which every rank averages from its own
    /// identical replica): the replica checksum covers it beside the parameters, so a copy that drifted shows.
    /// Batch-norm statistics stay out: with per-worker batch norm they differ by rank.
    /// </summary>
    IReadOnlyList<(string Name, Tensor Tensor)> ReplicatedState => [];

    /// <summary>
    /// The part of <see cref="State"/> that a forward pass changes before the step is committed (batch-norm
    /// running statistics, of the key network too). The loop copies it before every step and puts it back
    /// when a step fails part-way, so an abandoned step leaves no trace and is redone whole.
    /// </summary>
    IReadOnlyList<Tensor> ForwardState { get; }

    /// <summary>
    /// Where the backward pass completes groups of <see cref="Parameters"/> (<see cref="GradientMark"/>: a block's input),
    /// in forward order. The loop reduces a bucket of gradients as soon as backward has passed the marks of all its
    /// parameters, while backward goes on (DDP's overlap); parameters no mark covers are reduced after backward. Every
    /// rank returns the same marks in the same order (the bucket plan follows them), and in the last micro-step of a
    /// step a covered parameter gets its whole gradient from one backward pass through its mark. A method whose
    /// backward runs collectives (global batch norm) returns none: its small all-reduces would wait behind whole
    /// buckets on the one ring while backward stands still. Empty: every bucket is reduced after backward.
    /// </summary>
    IReadOnlyList<GradientMark> GradientMarks => [];

    /// <summary>Training samples the global sampler draws from (ids 0 … TrainSamples − 1).</summary>
    long TrainSamples { get; }

    /// <summary>
    /// Names the micro-batch that comes after the one the loop is about to run, so the method may make its input on
    /// another thread while that one computes (<see cref="Training.Prefetcher{T}"/>). A hint: the batch run next may
    /// differ (a new generation, a retried step), and the method must then compute what it would have without the hint.
    /// Not called in reproducible runs. The default prepares nothing.
    /// </summary>
    void PrepareAhead(MicroBatch next) { }

    /// <summary>
    /// Forward and backward of this rank's micro-batch over the generation's replicas
    /// <paramref name="group"/>, adding its gradient into <c>.grad</c>. The loop <b>sums</b> the gradients of
    /// all micro-steps and ranks afterwards, so the method differentiates its share of the step's loss
    /// normalised by the global sample count: the sum of its samples' losses over
    /// <see cref="MicroBatch.GlobalCount"/> (its mean loss times <see cref="MicroBatch.Weight"/>). The sum
    /// over ranks is then the same function of the global batch whatever the world size. A method whose
    /// loss couples ranks (SimCLR's global NT-Xent) backpropagates the exact gradient of the global loss
    /// into its own samples. Returns the share it differentiated, which the loop sums the same way.
    /// </summary>
    Task<double> ForwardBackwardAsync(MicroBatch batch, ICommunicator group, CancellationToken ct);

    /// <summary>
    /// Reproducible runs (<c>reproducible.enabled</c>): forward and backward of each of this rank's
    /// micro-shards on its own, handing each shard's gradient and loss share to <paramref name="gradients"/>.
    /// A shard's result must depend on its samples and the step alone — not on the rank, the world size or
    /// which shards share the rank — and anything that couples shards (gathered embeddings or keys, global
    /// batch-norm statistics) must be combined in shard order. Every rank makes the same collectives even
    /// when ranks hold different numbers of shards. This default suits methods whose samples do not
    /// interact (GPT, BERT): the shards one after another, each as its own micro-batch.
    /// </summary>
    async Task ForwardBackwardShardsAsync(ShardedBatch batch, ICommunicator group, IShardGradients gradients, CancellationToken ct)
    {
        for (var i = 0; i < batch.Plan.Count; i++)
        {
            var shard = batch.Shard(i);
            gradients.TakeFromGrad(shard.Shard, await ForwardBackwardAsync(shard, group, ct));
        }
    }

    /// <summary>
    /// After the optimizer applied step <paramref name="step"/> (not called for a skipped step): MoCo's
    /// momentum update of the key encoder and its enqueue, BYOL's of its target network.
    /// </summary>
    void AfterUpdate(long step);

    /// <summary>
    /// Evaluates the current replica; every rank of <paramref name="group"/> calls it at the same step and
    /// the result is the same on every rank. Names are snake_case (<c>val_loss</c>, <c>knn_accuracy</c>, …)
    /// and become <c>summary.json</c>'s <c>eval</c> and the <c>pretrain_eval{metric=…}</c> gauge.
    /// </summary>
    Task<IReadOnlyDictionary<string, double>> EvaluateAsync(ICommunicator group, CancellationToken ct);

    /// <summary>Training FLOPs per sample (forward and backward) for MFU; 0 when the method does not report MFU.</summary>
    double FlopsPerSample { get; }
}

/// <summary>
/// One rank's share of one micro-step: the step, which micro-step of how many, and its sample ids (in
/// global sample order, the same ids whatever the world size — brief, principle 4). Shares of ranks may
/// differ by one sample when the world size does not divide the batch.
/// </summary>
/// <param name="Shard">The micro-shard this batch is, in a reproducible run; −1 otherwise.</param>
public readonly record struct MicroBatch(long Step, int MicroStep, int MicroSteps, ReadOnlyMemory<long> SampleIds, int GlobalCount, int Shard = -1)
{
    /// <summary>
    /// What keys the randomness inside this batch that is not keyed by sample (dropout): the micro-shard in a
    /// reproducible run, so it is the same on any rank; else this rank's micro-step.
    /// </summary>
    public ulong RandomStream(int rank) => Shard >= 0 ? (1UL << 63) | (uint)Shard : (ulong)(rank * MicroSteps + MicroStep);

    /// <summary>A micro-batch without accumulation whose samples are the whole global batch (tests, world size 1).</summary>
    public MicroBatch(long step, int microStep, int microSteps, ReadOnlyMemory<long> sampleIds)
        : this(step, microStep, microSteps, sampleIds, sampleIds.Length * microSteps) { }

    /// <summary>Samples of this micro-step over all ranks: the global batch / micro-steps.</summary>
    public int MicroGlobalCount => GlobalCount / MicroSteps;

    /// <summary>This rank's samples over all samples of the step: the factor from its mean loss to its share.</summary>
    public double Weight => (double)SampleIds.Length / GlobalCount;
}

/// <summary>
/// This rank's micro-shards of one step of a reproducible run: which shards (<see cref="Plan"/>) of the
/// step's global batch <see cref="GlobalIds"/> (every rank has all of it: MoCo's shuffled keys need other
/// shards' samples).
/// </summary>
public readonly record struct ShardedBatch(long Step, ShardPlan Plan, ReadOnlyMemory<long> GlobalIds)
{
    /// <summary>Global shard <paramref name="shard"/>'s sample ids.</summary>
    public ReadOnlyMemory<long> IdsOf(int shard) => GlobalIds.Slice(shard * Plan.ShardSize, Plan.ShardSize);

    /// <summary>Local shard <paramref name="local"/> (0 … Plan.Count − 1) as a micro-batch normalised by the global batch.</summary>
    public MicroBatch Shard(int local) => new(Step, 0, 1, IdsOf(Plan.First + local), Plan.GlobalCount, Plan.First + local);
}

/// <summary>
/// What a method is built from: the recipe and the process's plumbing. Nothing here belongs to one
/// generation — the replicas of a generation come with each call — so a method outlives any regroup.
/// </summary>
public sealed record MethodContext(
    Recipe Recipe,
    TimeSpan CollectiveTimeout, // for collectives a method must run synchronously (global batch norm)
    StepPhases Phases,          // the method marks the end of its data, forward and backward work
    Action<string> Log)
{
    /// <summary>Samples one rank computes in one micro-step at most: all of them with one rank.</summary>
    public int MaxMicroBatch => Recipe.Batch.Global / Recipe.Batch.Accumulation;
}

/// <summary>A method whose encoder gives frozen features to evaluate (<c>pretrain eval</c>): SimCLR, MoCo, BYOL and MAE.</summary>
public interface IRepresentationMethod : IPretrainingMethod
{
    /// <summary>Features of <paramref name="images"/> (B, C, H, W) float in [0, 1] by the encoder in eval mode, without the projection head: (B, d).</summary>
    Tensor Features(Tensor images);
}
