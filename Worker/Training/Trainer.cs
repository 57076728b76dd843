using System.Diagnostics;
using Pretrain.Data.Sampling;
using Pretrain.Shared.Recipes;
using Pretrain.Shared.Telemetry;
using Pretrain.Worker.Collectives;
using Pretrain.Worker.Methods;
using Pretrain.Worker.Training.Checkpoints;
using Pretrain.Worker.Training.Optimizers;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pretrain.Worker.Training;

/// <summary>
/// The one data-parallel training loop of a rank, whatever the method (brief, principle 7): no Akka here,
/// the actor only pipes results. Every rank builds the same replica from the seed; each step every rank
/// runs its method over its part of the global batch (in micro-steps when accumulating), the gradients
/// are averaged through <see cref="ICollectives"/> once, and every rank applies the same update, so
/// replicas stay identical. Deterministic bit for bit for the same (recipe, world size, torch thread
/// count — see <see cref="TorchThreads"/>). The loop runs on its own <see cref="TrainingThread"/>.
/// </summary>
public sealed class Trainer : IDisposable
{
    private readonly Recipe _recipe;
    private readonly int _rank, _worldSize;
    private readonly ICollectives _collectives;
    private readonly Action<string> _log;
    private readonly IPretrainingMethod _method;
    private readonly GlobalBatchSampler _sampler;
    private readonly (string Name, Parameter Parameter)[] _parameters; // ordinal name order: buckets, files, checksum
    private readonly Parameter[] _parameterList;
    private readonly IOptimizer _optimizer;
    private readonly GradientBuckets _buckets;
    private readonly long[] _rankIds;   // this rank's sample ids of the current step
    private readonly int _microBatch;
    private readonly LrSchedule _schedule;
    private readonly CheckpointStore _checkpoints;
    private readonly StepPhases _phases = new();
    private string? _lastCheckpoint;

    public Trainer(Recipe recipe, int rank, int worldSize, ICollectives collectives, string runDirectory, Action<string> log,
        TimeSpan? collectiveTimeout = null)
    {
        recipe.ValidateForWorldSize(worldSize);
        if (collectives.WorldSize != worldSize || collectives.Rank != rank)
            throw new ArgumentException($"collectives are rank {collectives.Rank} of {collectives.WorldSize}, trainer was given rank {rank} of {worldSize}");
        (_recipe, _rank, _worldSize, _collectives, _log) = (recipe, rank, worldSize, collectives, log);
        _method = MethodFactory.Create(new MethodContext(recipe, rank, worldSize, collectives,
            collectiveTimeout ?? TimeSpan.FromSeconds(60), _phases, log));
        _parameters = [.. _method.Parameters];
        _parameterList = _parameters.Select(p => p.Parameter).ToArray();
        _sampler = new GlobalBatchSampler(recipe.Seed, _method.TrainSamples, recipe.Batch.Global);
        _optimizer = OptimizerFactory.Create(recipe.Optimizer, _parameters, _method.Decays);
        _buckets = new GradientBuckets(_parameterList, collectives, recipe.Batch.Accumulation);
        _rankIds = new long[recipe.Batch.Global / worldSize];
        _microBatch = recipe.MicroBatch(worldSize);
        _schedule = new LrSchedule(recipe.Optimizer.Lr, recipe.Optimizer.MinLr, recipe.Schedule.WarmupSteps, recipe.Steps);
        _checkpoints = new CheckpointStore(runDirectory, log);
    }

    /// <summary>Raised on rank 0 after a checkpoint directory is published: (step, directory).</summary>
    public event Action<long, string>? CheckpointWritten;

    /// <summary>Checksum of this replica's parameters now.</summary>
    public string ReplicaChecksumNow() => ReplicaChecksum.Of(_parameters.Select(p => (p.Name, (Tensor)p.Parameter)));

    /// <summary>
    /// Trains up to step min(recipe.steps, <paramref name="maxSteps"/>) — from the newest valid checkpoint
    /// when <paramref name="resume"/> — checkpointing on rank 0, evaluating every <c>eval.every</c> steps
    /// and at the end. Runs on a training thread of its own.
    /// </summary>
    public Task<TrainingResult> RunAsync(long maxSteps, bool resume, IProgress<StepReport>? progress, CancellationToken ct) =>
        TrainingThread.Run($"train-rank-{_rank}", () => LoopAsync(maxSteps, resume, progress, ct));

    private async Task<TrainingResult> LoopAsync(long maxSteps, bool resume, IProgress<StepReport>? progress, CancellationToken ct)
    {
        var last = Math.Min(_recipe.Steps, maxSteps);
        var (step, loss) = resume ? Resume() : (0L, double.NaN);
        if (step == 0 && _worldSize > 1)
            await BroadcastReplicaAsync(ct);
        PretrainMetrics.Workers.Set(_worldSize);
        var started = Stopwatch.GetTimestamp();
        var firstStep = step;
        var firstLoss = double.NaN;
        while (step < last)
        {
            ct.ThrowIfCancellationRequested();
            var stepStarted = Stopwatch.GetTimestamp();
            var (stepLoss, lr, norm) = await StepAsync(step, ct);
            (step, loss) = (step + 1, stepLoss);
            if (step == firstStep + 1) firstLoss = loss;
            var samplesPerSecond = _recipe.Batch.Global / Stopwatch.GetElapsedTime(stepStarted).TotalSeconds;
            PretrainMetrics.StepsTotal.Inc();
            PretrainMetrics.Loss.Set(loss);
            PretrainMetrics.SamplesPerSecond.Set(samplesPerSecond);
            progress?.Report(new StepReport(step, loss, lr, norm, samplesPerSecond));
            if (_rank == 0 && (step % _recipe.Checkpoint.Every == 0 || step == last))
                _lastCheckpoint = WriteCheckpoint(step, loss, lr);
            if (_recipe.Eval.Every > 0 && step % _recipe.Eval.Every == 0 && step != last)
                await EvaluateAsync(step, ct);
        }
        var elapsed = Stopwatch.GetElapsedTime(started).TotalSeconds;
        var throughput = step > firstStep ? (step - firstStep) * _recipe.Batch.Global / elapsed : 0;
        var eval = await EvaluateAsync(step, ct);
        return new TrainingResult(step, loss, throughput, ReplicaChecksumNow(), eval, Mfu(throughput), firstLoss);
    }

    /// <summary>
    /// Achieved over peak FLOP/s. Every rank runs the same model on an equal share with the same threads,
    /// so the global rate over the summed peaks is each rank's own utilization.
    /// </summary>
    private double Mfu(double samplesPerSecond)
    {
        if (samplesPerSecond <= 0 || _method.FlopsPerSample <= 0) return 0;
        return _method.FlopsPerSample * samplesPerSecond / (ModelFlops.MeasuredPeak() * _worldSize);
    }

    /// <summary>
    /// One step: the method's data, forward and backward for each micro-step (gradients add up in
    /// <c>.grad</c>), then one allreduce, the non-finite check, clipping and the optimizer. Every tensor
    /// made in a step is disposed by the end of it.
    /// </summary>
    private async Task<(double Loss, double Lr, double Norm)> StepAsync(long step, CancellationToken ct)
    {
        _phases.Start();
        _sampler.RankBatch(step, _rank, _worldSize, _rankIds);
        var microSteps = _recipe.Batch.Accumulation;
        double localLoss = 0;
        for (var k = 0; k < microSteps; k++)
            localLoss += await _method.ForwardBackwardAsync(
                new MicroBatch(step, k, microSteps, _rankIds.AsMemory(k * _microBatch, _microBatch)), ct);
        _buckets.Pack(localLoss);
        await _buckets.ReduceAsync(ct);
        _phases.Lap(StepPhase.AllReduce);

        using var scope = NewDisposeScope();
        var globalLoss = _buckets.Unpack();
        var lr = _schedule.At(step);
        var norm = double.IsFinite(globalLoss) ? GradientClipping.ClipGlobalNorm(_parameterList, _recipe.Optimizer.GradClip) : double.NaN;
        if (!double.IsFinite(globalLoss) || !double.IsFinite(norm))
        {
            // Every rank sees the same reduced loss and gradient, so every rank takes the same branch.
            ZeroGradients();
            if (_recipe.OnNonFiniteLoss == NonFiniteLoss.Stop)
                throw new TrainingDivergedException(step, globalLoss, norm,
                    _lastCheckpoint ?? _checkpoints.Published().Select(c => c.Directory).FirstOrDefault());
            PretrainMetrics.SkippedStepsTotal.Inc();
            _log($"step {step}: loss {globalLoss}, gradient norm {norm}; update skipped (on_nonfinite_loss: skip)");
            return (globalLoss, lr, norm);
        }
        _optimizer.Update(lr);
        ZeroGradients();
        _method.AfterUpdate(step);
        _phases.Lap(StepPhase.Optimizer);
        return (globalLoss, lr, norm);
    }

    /// <summary>
    /// Makes every replica start from rank 0's parameters and state, as DDP does at construction. Seeded
    /// initialisation already agrees across processes; this also covers initialisers that draw from
    /// libtorch's global generator, which ranks sharing one process would interleave.
    /// </summary>
    private async Task BroadcastReplicaAsync(CancellationToken ct)
    {
        foreach (var (_, tensor) in _parameters.Select(p => (p.Name, (Tensor)p.Parameter)).Concat(_method.State))
            await _collectives.BroadcastAsync(new NativeMemory<byte>(tensor).Memory, root: 0, ct);
    }

    /// <summary>Zeroes <c>.grad</c> in place: the next backward adds into the same tensors, so a step allocates none.</summary>
    private void ZeroGradients()
    {
        foreach (var p in _parameterList)
        {
            using var grad = p.grad;
            grad?.zero_();
        }
    }

    private async Task<IReadOnlyDictionary<string, double>> EvaluateAsync(long step, CancellationToken ct)
    {
        var started = Stopwatch.GetTimestamp();
        var eval = await _method.EvaluateAsync(ct);
        foreach (var (name, value) in eval)
            PretrainMetrics.Eval.WithLabels(name).Set(value);
        if (_rank == 0)
            _log($"eval at step {step} ({Stopwatch.GetElapsedTime(started).TotalSeconds:F1} s): " +
                 string.Join(", ", eval.Select(e => $"{e.Key} {e.Value:0.####}")));
        return eval;
    }

    private string WriteCheckpoint(long step, double loss, double lr)
    {
        var started = Stopwatch.GetTimestamp();
        var state = new TrainingState(step, _sampler.EpochOf(step), _optimizer.Step, lr, _recipe.Seed, loss);
        var model = _parameters.Select(p => (p.Name, (Tensor)p.Parameter)).Concat(_method.State).ToList();
        var directory = _checkpoints.Write(new CheckpointContent(state, model, _optimizer.StateTensors().ToList(), _recipe, _worldSize),
            _recipe.Checkpoint.Keep);
        _log($"checkpoint {directory} written in {Stopwatch.GetElapsedTime(started).TotalMilliseconds:F0} ms");
        CheckpointWritten?.Invoke(step, directory);
        return directory;
    }

    /// <summary>Loads the newest verified checkpoint of the shared run directory; returns its step and loss.</summary>
    private (long Step, double Loss) Resume()
    {
        if (_checkpoints.FindNewest(_recipe.Source.Hash) is not { } checkpoint)
        {
            _log($"no checkpoint in {_checkpoints.Directory}; starting at step 0");
            return (0, double.NaN);
        }
        using (no_grad())
        {
            checkpoint.LoadModel(_parameters.Select(p => (p.Name, (Tensor)p.Parameter)).Concat(_method.State).ToDictionary(p => p.Item1, p => p.Item2));
            checkpoint.LoadOptimizer(_optimizer.StateTensors().ToDictionary(s => s.Name, s => s.Tensor));
        }
        _optimizer.Step = checkpoint.State.OptimizerStep;
        _lastCheckpoint = checkpoint.Directory;
        _log($"resumed from {checkpoint.Directory} at step {checkpoint.State.Step}");
        return (checkpoint.State.Step, checkpoint.State.Loss);
    }

    public void Dispose()
    {
        _buckets.Dispose();
        _optimizer.Dispose();
        _method.Dispose();
    }
}
