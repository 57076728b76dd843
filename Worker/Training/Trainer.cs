using System.Diagnostics;
using System.Globalization;
using System.IO.Hashing;
using System.Runtime.InteropServices;
using Pretrain.Data.Sampling;
using Pretrain.Shared.Recipes;
using Pretrain.Shared.Telemetry;
using Pretrain.Worker.Collectives;
using Pretrain.Worker.Methods;
using Pretrain.Worker.Telemetry;
using Pretrain.Worker.Training.Checkpoints;
using Pretrain.Worker.Training.Optimizers;
using Pretrain.Worker.Training.Reproducible;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pretrain.Worker.Training;

/// <summary>
/// A replica and the one data-parallel training loop over it, whatever the method (brief, principle 7): no
/// Akka here, the actor only pipes results. The replica — model, optimizer state, method state, step,
/// sample digest — lives as long as the worker process; a generation only lends it a rank, a world size
/// and a communicator (<see cref="GenerationPlan"/>), so survivors of a lost peer carry on from memory.
/// Each generation starts by adopting the state of its source rank (<see cref="ReplicaSync"/>); then every
/// step every rank runs its method over its share of the global batch (in micro-steps when accumulating),
/// the gradients are summed through <see cref="ICollectives"/> once — bucket by bucket, while the last
/// micro-step's backward goes on (<see cref="GradientBuckets"/>) — and every rank applies the same update,
/// so replicas stay identical. A step that fails part-way leaves no trace (gradients zeroed, batch-norm
/// statistics restored) and is redone whole by the next generation. The loop runs on its own
/// <see cref="TrainingThread"/>.
/// </summary>
public sealed class Trainer : IDisposable
{
    private readonly Recipe _recipe;
    private readonly Action<string> _log;
    private readonly IPretrainingMethod _method;
    private readonly GlobalBatchSampler _sampler;
    private readonly (string Name, Parameter Parameter)[] _parameters; // ordinal name order: buckets, files, checksum
    private readonly Parameter[] _parameterList;
    private readonly IOptimizer _optimizer;
    private readonly GradientBuckets _buckets;
    private readonly ExactGradientSum? _exact;         // reproducible runs: the exact sum over micro-shards instead of the buckets
    private readonly Tensor[] _state;                  // everything a generation's source hands over, in a fixed order
    private readonly Tensor[] _forwardState, _forwardSnapshot;
    private readonly long[] _ids;                      // this rank's sample ids of the current micro-step
    private readonly long[] _nextIds;                  // and of the next one, named to the method ahead of time
    private readonly long[] _globalIds;                // the global batch of a committed step, for the sample digest
    private readonly LrSchedule _schedule;
    private readonly CheckpointStore _checkpoints;
    private readonly CheckpointWriter _writer;
    private readonly StepPhases _phases;
    private readonly TraceRecorder? _trace;           // --trace: the step timeline, or null
    private readonly ICommunicator? _single;           // the one generation of the single-generation constructor
    private string? _lastCheckpoint;
    private bool _started;
    private double _loss = double.NaN, _firstLoss = double.NaN, _stepSeconds;
    private long _stepsRun;

    /// <summary>Builds a replica from the recipe's seed. Nothing here knows a rank or a world size.</summary>
    /// <param name="trace">Where the step phases, adoptions, checkpoints and evaluations are timed (<c>--trace</c>); null: nowhere.</param>
    public Trainer(Recipe recipe, string runDirectory, Action<string> log, TimeSpan? collectiveTimeout = null, TraceRecorder? trace = null)
    {
        (_recipe, _log, _trace) = (recipe, log, trace);
        _phases = new StepPhases(trace);
        _method = MethodFactory.Create(new MethodContext(recipe, collectiveTimeout ?? TimeSpan.FromSeconds(60), _phases, log));
        _parameters = [.. _method.Parameters];
        _parameterList = _parameters.Select(p => p.Parameter).ToArray();
        _sampler = new GlobalBatchSampler(recipe.Seed, _method.TrainSamples, recipe.Batch.Global);
        _optimizer = OptimizerFactory.Create(recipe.Optimizer, _parameters, _method.Decays);
        _buckets = new GradientBuckets(_parameterList, _method.GradientMarks);   // every .grad becomes a view into its bucket
        if (recipe.IsReproducible)
        {
            // libtorch splits a kernel's work by thread, and how it splits can change a reduction's rounding;
            // one intra-op thread per process makes a shard's forward and backward the same on every worker.
            TorchSharp.torch.set_num_threads(1);
            _exact = new ExactGradientSum(_parameterList, recipe.Reproducible!.Shards);
            log($"reproducible: {recipe.Reproducible.Shards} micro-shards of {recipe.Reproducible.ShardSize(recipe.Batch.Global)} samples, exact gradient sum, 1 torch thread");
        }
        _state = [.. _parameters.Select(p => (Tensor)p.Parameter), .. _method.State.Select(s => s.Tensor), .. _optimizer.StateTensors().Select(s => s.Tensor)];
        _forwardState = [.. _method.ForwardState];
        _forwardSnapshot = _forwardState.Select(t => empty_like(t).DetachFromDisposeScope()).ToArray();
        _ids = new long[recipe.Batch.Global / recipe.Batch.Accumulation];
        _nextIds = new long[_ids.Length];
        _globalIds = new long[recipe.Batch.Global];
        _schedule = new LrSchedule(recipe.Optimizer.Lr, recipe.Optimizer.MinLr, recipe.Schedule.WarmupSteps, recipe.Steps);
        _checkpoints = new CheckpointStore(runDirectory, log);
        _writer = new CheckpointWriter(_checkpoints, log);
    }

    /// <summary>A replica for one generation on <paramref name="collectives"/> (tests and single-generation use).</summary>
    public Trainer(Recipe recipe, int rank, int worldSize, ICollectives collectives, string runDirectory, Action<string> log,
        TimeSpan? collectiveTimeout = null) : this(recipe, runDirectory, log, collectiveTimeout)
    {
        recipe.ValidateForWorldSize(worldSize);
        if (collectives.WorldSize != worldSize || collectives.Rank != rank)
            throw new ArgumentException($"collectives are rank {collectives.Rank} of {collectives.WorldSize}, trainer was given rank {rank} of {worldSize}");
        _single = new HostCommunicator(collectives);
    }

    /// <summary>Raised on rank 0, on the checkpoint writer's thread, after a checkpoint directory is published: (step, directory).</summary>
    public event Action<long, string>? CheckpointWritten;

    /// <summary>Steps this replica holds (committed).</summary>
    public long Step { get; private set; }

    /// <summary>False while this replica holds no state worth keeping: a newcomer before its first state broadcast, or one cut off in the middle of it.</summary>
    public bool HoldsState { get; private set; } = true;

    /// <summary>Chained xxHash64 of the sample ids of every committed step, in step order: digest' = xxHash64(ids of the step, seed: digest).</summary>
    public ulong SampleDigest { get; private set; }

    /// <summary>Rank 0's blocking time of its last checkpoint save (benchmarks).</summary>
    public TimeSpan LastCheckpointBlocking => _writer.LastBlocking;

    /// <summary>Checksum of this replica's parameters and of the method state derived from them alike on every rank (BYOL's target network) now.</summary>
    public string ReplicaChecksumNow() =>
        ReplicaChecksum.Of(_parameters.Select(p => (p.Name, Tensor: (Tensor)p.Parameter)).Concat(_method.ReplicatedState));

    /// <summary>
    /// The single-generation run: trains up to step min(recipe.steps, <paramref name="maxSteps"/>) — from the
    /// newest valid checkpoint when <paramref name="resume"/> — checkpointing on rank 0, evaluating every
    /// <c>eval.every</c> steps and at the end.
    /// </summary>
    public async Task<TrainingResult> RunAsync(long maxSteps, bool resume, IProgress<StepReport>? progress, CancellationToken ct)
    {
        var group = _single ?? throw new InvalidOperationException("this trainer was built without collectives; use RunGenerationAsync");
        var outcome = await RunGenerationAsync(new GenerationPlan(group, 0, maxSteps, resume, new StepControl()), progress, ct);
        return outcome is GenerationOutcome.Finished f ? f.Result : throw new InvalidOperationException($"the generation stopped early: {outcome}");
    }

    /// <summary>
    /// Trains one generation on its own training thread: adopts the source rank's state, then steps until the
    /// job's last step (evaluating at the end) or a step boundary the ring agreed on. A collective failure or
    /// <paramref name="ct"/> (the generation abandoned) ends it with an exception, the step in flight undone.
    /// </summary>
    public Task<GenerationOutcome> RunGenerationAsync(GenerationPlan plan, IProgress<StepReport>? progress, CancellationToken ct) =>
        TrainingThread.Run($"train-g{plan.Group.Generation}-rank-{plan.Group.Rank}", () => GenerationAsync(plan, progress, ct));

    private async Task<GenerationOutcome> GenerationAsync(GenerationPlan plan, IProgress<StepReport>? progress, CancellationToken ct)
    {
        var group = plan.Group;
        if (!_started)
        {
            _started = true;
            if (plan.Resume) ResumeFromDisk();
        }
        _trace?.GenerationStarted(group.Generation, group.Rank, group.WorldSize);
        await AdoptAsync(group, plan.SourceRank, ct);
        _buckets.BindGradients();   // nothing should have replaced a .grad, but a step must never add into a tensor no bucket holds
        PretrainMetrics.Workers.Set(group.WorldSize);
        PretrainMetrics.WorldSize.Set(group.WorldSize);
        PretrainMetrics.Generation.Set(group.Generation);
        var last = Math.Min(_recipe.Steps, plan.MaxSteps);
        while (Step < last)
        {
            ct.ThrowIfCancellationRequested();
            var stepStarted = Stopwatch.GetTimestamp();
            var (stepLoss, lr, norm, stopVotes, leaveVotes) = await StepAsync(group, plan.Control, ct);
            var seconds = Stopwatch.GetElapsedTime(stepStarted).TotalSeconds;
            (_stepSeconds, _stepsRun) = (_stepSeconds + seconds, _stepsRun + 1);
            if (double.IsNaN(_firstLoss) && _stepsRun == 1) _firstLoss = stepLoss;
            var samplesPerSecond = _recipe.Batch.Global / seconds;
            PretrainMetrics.StepsTotal.Inc();
            PretrainMetrics.Loss.Set(stepLoss);
            PretrainMetrics.SamplesPerSecond.Set(samplesPerSecond);
            var reduction = _exact is null ? _buckets.LastReduction : default;
            progress?.Report(new StepReport(Step, stepLoss, lr, norm, samplesPerSecond, reduction.Seconds, reduction.HiddenSeconds));
            if (group.Rank == 0 && (Step % _recipe.Checkpoint.Every == 0 || Step == last))
                SaveCheckpoint(lr, group.WorldSize);
            if (_recipe.Eval.Every > 0 && Step % _recipe.Eval.Every == 0 && Step != last)
                await EvaluateAsync(group, ct);
            if (stopVotes > 0 && Step < last)
                return new GenerationOutcome.Boundary(Step, plan.Control.Leaving, leaveVotes,
                    plan.Control.Reason ?? (leaveVotes > 0 ? $"{leaveVotes} rank(s) leaving" : "a newcomer waits to join"));
        }
        if (group.Rank == 0) _writer.Flush();       // the last checkpoint is on disk before the job is reported finished
        var throughput = Throughput;
        var eval = await EvaluateAsync(group, ct);
        return new GenerationOutcome.Finished(new TrainingResult(Step, _loss, throughput, ReplicaChecksumNow(), eval,
            Mfu(throughput, group.WorldSize), _firstLoss, SampleDigest.ToString("x16", CultureInfo.InvariantCulture)));
    }

    /// <summary>Every member takes the source rank's replica (a no-op when all already agree, as on a fresh start).</summary>
    private async Task AdoptAsync(ICommunicator group, int source, CancellationToken ct)
    {
        var mine = new ReplicaHeader(Step, _optimizer.Step, _loss, SampleDigest, ReplicaSync.Checksum(_state), _state.Sum(t => (long)t.bytes.Length));
        var started = Stopwatch.GetTimestamp();
        var (header, transferred) = await ReplicaSync.AdoptAsync(group, source, mine, HoldsState, _state, () => HoldsState = false, ct);
        (Step, _optimizer.Step, _loss, SampleDigest, HoldsState) = (header.Step, header.OptimizerStep, header.Loss, header.SampleDigest, true);
        _trace?.Complete(TraceKind.Adopt, started, Stopwatch.GetTimestamp(), Step);
        if (transferred)
            _log($"generation {group.Generation}: adopted the replica of rank {source} at step {Step} ({header.Bytes / 1e6:0.0} MB in {Stopwatch.GetElapsedTime(started).TotalMilliseconds:F0} ms, checksum {header.Checksum:x16})");
    }

    /// <summary>
    /// Achieved over peak FLOP/s. Every rank runs the same model on a near-equal share with the same threads,
    /// so the global rate over the summed peaks is each rank's own utilization.
    /// </summary>
    private double Mfu(double samplesPerSecond, int worldSize)
    {
        if (samplesPerSecond <= 0 || _method.FlopsPerSample <= 0) return 0;
        return _method.FlopsPerSample * samplesPerSecond / (ModelFlops.MeasuredPeak() * worldSize);
    }

    /// <summary>
    /// One step: the method's data, forward and backward for each micro-step (gradients add up in
    /// <c>.grad</c>, views of the buckets), then one allreduce of the buckets that also carries the loss and
    /// the ranks' stop votes — started bucket by bucket during the last micro-step's backward — the non-finite
    /// check, clipping and the optimizer. Until the allreduce completes nothing is committed: a failure
    /// before it undoes the step. Every tensor made in a step is disposed by the end of it.
    /// </summary>
    private async Task<(double Loss, double Lr, double Norm, int StopVotes, int LeaveVotes)> StepAsync(ICommunicator group, StepControl control, CancellationToken ct)
    {
        var step = Step;
        _phases.Start(step + 1);   // numbered as the progress line and the checkpoints count steps: 1 is the first
        var microSteps = _recipe.Batch.Accumulation;
        SnapshotForwardState();
        try
        {
            if (_exact is not null)
                await ShardsAsync(step, group, control, ct);
            else
            {
                double localLoss = 0;
                for (var k = 0; k < microSteps; k++)
                {
                    var count = _sampler.MicroBatch(step, k, microSteps, group.Rank, group.WorldSize, _ids);
                    PrepareAhead(step, k, group);
                    if (k == microSteps - 1)
                        _buckets.Arm(group, ct);   // the last backward starts each bucket's allreduce once it has completed the bucket
                    localLoss += await _method.ForwardBackwardAsync(new MicroBatch(step, k, microSteps, _ids.AsMemory(0, count), _recipe.Batch.Global), group, ct);
                }
                _buckets.Launch(localLoss, control.StopRequested, control.Leaving);
                await _buckets.ReduceAsync();
            }
        }
        catch
        {
            await _buckets.AbandonAsync();   // first, no allreduce of this step may still be writing into the buckets
            Undo();
            throw;
        }
        _phases.Lap(StepPhase.AllReduce);
        if (_exact is null) _phases.Reduced(_buckets.LastReduction);

        using var scope = NewDisposeScope();
        var (globalLoss, stopVotes, leaveVotes) = _exact?.Result ?? _buckets.Result;
        var lr = _schedule.At(step);
        var clip = _recipe.Optimizer.GradClip;
        var norm = !double.IsFinite(globalLoss) ? double.NaN
            : _exact is null ? GradientClipping.ClipGlobalNorm(_buckets.Gradients, clip)   // one square-sum and one mul_ per bucket
            : GradientClipping.ClipGlobalNorm(_parameterList, clip);                     // the reproducible path's, bit for bit as it was
        if (!double.IsFinite(globalLoss) || !double.IsFinite(norm))
        {
            // Every rank sees the same reduced loss and gradient, so every rank takes the same branch.
            ZeroGradients();
            if (_recipe.OnNonFiniteLoss == NonFiniteLoss.Stop)
            {
                _writer.Flush();   // the last good checkpoint may still be being written: name it once it is on disk
                throw new TrainingDivergedException(step, globalLoss, norm,
                    _lastCheckpoint ?? _checkpoints.Published().Select(c => c.Directory).FirstOrDefault());
            }
            PretrainMetrics.SkippedStepsTotal.Inc();
            _log($"step {step}: loss {globalLoss}, gradient norm {norm}; update skipped (on_nonfinite_loss: skip)");
        }
        else
        {
            _optimizer.Update(lr);
            ZeroGradients();
            _method.AfterUpdate(step);
        }
        Commit(step, globalLoss);
        _phases.Lap(StepPhase.Optimizer);
        return (globalLoss, lr, norm, stopVotes, leaveVotes);
    }

    /// <summary>
    /// Names the micro-batch after (<paramref name="step"/>, <paramref name="k"/>) to the method, which may make its input
    /// while this one computes (a DataLoader's prefetch); it assumes the generation goes on, and the method checks.
    /// </summary>
    private void PrepareAhead(long step, int k, ICommunicator group)
    {
        var microSteps = _recipe.Batch.Accumulation;
        var (nextStep, nextK) = k + 1 < microSteps ? (step, k + 1) : (step + 1, 0);
        if (nextStep >= _recipe.Steps) return;
        var count = _sampler.MicroBatch(nextStep, nextK, microSteps, group.Rank, group.WorldSize, _nextIds);
        _method.PrepareAhead(new MicroBatch(nextStep, nextK, microSteps, _nextIds.AsMemory(0, count), _recipe.Batch.Global));
    }

    /// <summary>
    /// A reproducible step: this rank's micro-shards of the global batch, each computed on its own by the
    /// method, then their gradients summed exactly (<see cref="ExactGradientSum"/>) into <c>.grad</c>.
    /// </summary>
    private async Task ShardsAsync(long step, ICommunicator group, StepControl control, CancellationToken ct)
    {
        var plan = ShardPlan.For(_recipe.Batch.Global, _recipe.Reproducible!.Shards, group.WorldSize, group.Rank);
        _sampler.GlobalBatchOf(step, _globalIds);
        _exact!.Begin(plan);
        var batch = new ShardedBatch(step, plan, _globalIds);
        await _method.ForwardBackwardShardsAsync(batch, group, _exact, ct);
        await _exact.ReduceAsync(group, control.StopRequested, control.Leaving, ct);
    }

    /// <summary>The step is done on this replica: count it and chain its global batch into the sample digest.</summary>
    private void Commit(long step, double loss)
    {
        _sampler.GlobalBatchOf(step, _globalIds);
        SampleDigest = XxHash64.HashToUInt64(MemoryMarshal.AsBytes(_globalIds.AsSpan()), unchecked((long)SampleDigest));
        (Step, _loss) = (step + 1, loss);
    }

    private void SnapshotForwardState()
    {
        using var noGrad = no_grad();
        for (var i = 0; i < _forwardState.Length; i++)
            _forwardSnapshot[i].copy_(_forwardState[i]);
    }

    /// <summary>Undoes what a step that failed part-way changed: its gradients and the statistics its forward passes moved.</summary>
    private void Undo()
    {
        ZeroGradients();
        using var noGrad = no_grad();
        for (var i = 0; i < _forwardState.Length; i++)
            _forwardState[i].copy_(_forwardSnapshot[i]);
    }

    /// <summary>Zeroes <c>.grad</c> in place, one <c>zero_</c> per bucket: the next backward adds into the same memory.</summary>
    private void ZeroGradients() => _buckets.Zero();

    private async Task<IReadOnlyDictionary<string, double>> EvaluateAsync(ICommunicator group, CancellationToken ct)
    {
        var started = Stopwatch.GetTimestamp();
        var eval = await _method.EvaluateAsync(group, ct);
        _trace?.Complete(TraceKind.Eval, started, Stopwatch.GetTimestamp(), Step);
        foreach (var (name, value) in eval)
            PretrainMetrics.Eval.WithLabels(name).Set(value);
        if (group.Rank == 0)
            _log($"eval at step {Step} ({Stopwatch.GetElapsedTime(started).TotalSeconds:F1} s): " +
                 string.Join(", ", eval.Select(e => $"{e.Key} {e.Value:0.####}")));
        return eval;
    }

    /// <summary>Samples per second of this process's steps; a resume that ran none reports the segment before it.</summary>
    private double Throughput => _stepSeconds > 0 ? _stepsRun * _recipe.Batch.Global / _stepSeconds : _carriedThroughput;

    private double _carriedThroughput;

    private void SaveCheckpoint(double lr, int worldSize)
    {
        var started = Stopwatch.GetTimestamp();
        var state = new TrainingState(Step, _sampler.EpochOf(Step), _optimizer.Step, lr, _recipe.Seed, _loss,
            SampleDigest.ToString("x16", CultureInfo.InvariantCulture),
            double.IsNaN(_firstLoss) ? null : _firstLoss, Throughput > 0 ? Throughput : null);
        var model = _parameters.Select(p => (p.Name, (Tensor)p.Parameter)).Concat(_method.State).ToList();
        _writer.Save(state, model, _optimizer.StateTensors().ToList(), _recipe, worldSize, (step, directory) =>
        {
            _lastCheckpoint = directory;
            CheckpointWritten?.Invoke(step, directory);
        });
        _trace?.Complete(TraceKind.Checkpoint, started, Stopwatch.GetTimestamp(), Step);   // the training thread's share: the snapshot copy
    }

    /// <summary>Loads the newest verified checkpoint of the shared run directory.</summary>
    private void ResumeFromDisk()
    {
        if (_checkpoints.FindNewest(_recipe.Source.Hash) is not { } checkpoint)
        {
            _log($"no checkpoint in {_checkpoints.Directory}; starting at step 0");
            return;
        }
        using (no_grad())
        {
            checkpoint.LoadModel(_parameters.Select(p => (p.Name, (Tensor)p.Parameter)).Concat(_method.State).ToDictionary(p => p.Item1, p => p.Item2));
            checkpoint.LoadOptimizer(_optimizer.StateTensors().ToDictionary(s => s.Name, s => s.Tensor));
        }
        _optimizer.Step = checkpoint.State.OptimizerStep;
        _lastCheckpoint = checkpoint.Directory;
        (Step, _loss) = (checkpoint.State.Step, checkpoint.State.Loss);
        // The job's first loss is its first segment's; a resume that runs no step keeps the last segment's throughput.
        if (checkpoint.State.FirstLoss is { } first) _firstLoss = first;
        _carriedThroughput = checkpoint.State.SamplesPerSecond ?? 0;
        SampleDigest = ulong.TryParse(checkpoint.State.SampleDigest, NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var digest) ? digest : 0;
        _log($"resumed from {checkpoint.Directory} at step {checkpoint.State.Step}");
    }

    public void Dispose()
    {
        _writer.Dispose();
        foreach (var t in _forwardSnapshot) t.Dispose();
        _buckets.Dispose();
        _exact?.Dispose();
        _optimizer.Dispose();
        _method.Dispose();
    }
}

/// <summary>What one generation lends a replica: the ring, whose state to adopt, how far to go, and whether to start from disk.</summary>
/// <param name="Group">The generation's collectives: its rank and world size.</param>
/// <param name="SourceRank">The rank whose replica every member adopts first.</param>
/// <param name="MaxSteps">Stop after this step (the job's <c>--max-steps</c>).</param>
/// <param name="Resume">Load the newest checkpoint before the first generation (ignored later).</param>
/// <param name="Control">Stop votes: a newcomer waiting or this worker leaving.</param>
public sealed record GenerationPlan(ICommunicator Group, int SourceRank, long MaxSteps, bool Resume, StepControl Control);

/// <summary>How a generation ended on this rank when nothing failed.</summary>
public abstract record GenerationOutcome
{
    /// <summary>The job's last step is done and evaluated.</summary>
    public sealed record Finished(TrainingResult Result) : GenerationOutcome;

    /// <summary>The ring agreed to stop after <paramref name="Step"/>: a newcomer waits, or <paramref name="Leavers"/> members leave (this one if <paramref name="Leaving"/>).</summary>
    public sealed record Boundary(long Step, bool Leaving, int Leavers, string Reason) : GenerationOutcome;
}

/// <summary>
/// This rank's vote to end the generation at the next step boundary, set from other threads (the worker
/// actor when a newcomer waits, the SIGTERM handler when leaving) and read at each step's allreduce.
/// </summary>
public sealed class StepControl
{
    private volatile string? _reason;
    private volatile bool _leaving;

    public bool StopRequested => _reason is not null;
    public bool Leaving => _leaving;
    public string? Reason => _reason;

    /// <summary>Vote to stop at the next step boundary (a newcomer is waiting).</summary>
    public void RequestStop(string reason) => _reason ??= reason;

    /// <summary>Vote to stop and leave the job after the current step (SIGTERM).</summary>
    public void Leave(string reason)
    {
        _leaving = true;
        _reason = reason;
    }

    /// <summary>Clears a vote that a boundary has answered; a leave stays.</summary>
    public void Answered()
    {
        if (!_leaving) _reason = null;
    }
}
