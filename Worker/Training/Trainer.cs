using System.Diagnostics;
using Pretrain.Data;
using Pretrain.Data.Sampling;
using Pretrain.Shared.Recipes;
using Pretrain.Shared.Telemetry;
using Pretrain.Worker.Collectives;
using Pretrain.Worker.Models;
using Pretrain.Worker.Training.Checkpoints;
using Prometheus;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pretrain.Worker.Training;

/// <summary>
/// The data-parallel training loop of one rank: no Akka here, the actor only pipes results. Every rank
/// builds the same model from the seed, trains on its part of each global batch, averages gradients
/// through <see cref="ICollectives"/> and applies the same AdamW update, so replicas stay identical.
/// Deterministic bit for bit for the same (recipe, world size, torch thread count — see <see cref="TorchThreads"/>).
/// </summary>
public sealed class Trainer : IDisposable
{
    private readonly Recipe _recipe;
    private readonly int _rank, _worldSize;
    private readonly ICollectives _collectives;
    private readonly Action<string> _log;
    private readonly ByteTextCorpus _corpus;
    private readonly GlobalBatchSampler _sampler;
    private readonly Gpt _model;
    private readonly (string Name, Parameter Parameter)[] _parameters; // ordinal name order: buckets, files, checksum
    private readonly Parameter[] _parameterList;
    private readonly AdamW _optimizer;
    private readonly GradientBuckets _buckets;
    private readonly TokenBatch _batch;
    private readonly LrSchedule _schedule;
    private readonly CheckpointStore _checkpoints;
    private readonly Histogram.Child _dataSeconds, _forwardSeconds, _backwardSeconds, _allReduceSeconds, _optimizerSeconds;
    private string? _lastCheckpoint;

    public Trainer(Recipe recipe, int rank, int worldSize, ICollectives collectives, string runDirectory, Action<string> log)
    {
        recipe.ValidateForWorldSize(worldSize);
        if (collectives.WorldSize != worldSize || collectives.Rank != rank)
            throw new ArgumentException($"collectives are rank {collectives.Rank} of {collectives.WorldSize}, trainer was given rank {rank} of {worldSize}");
        (_recipe, _rank, _worldSize, _collectives, _log) = (recipe, rank, worldSize, collectives, log);
        _corpus = new ByteTextCorpus(recipe.Data.TextPath, recipe.Model.Context, recipe.Data.ValidationFraction);
        _sampler = new GlobalBatchSampler(recipe.Seed, _corpus.TrainSamples, recipe.Batch.Global);
        _model = new Gpt(recipe.Model, recipe.Seed);
        _parameters = _model.named_parameters().OrderBy(p => p.name, StringComparer.Ordinal).ToArray();
        _parameterList = _parameters.Select(p => p.Parameter).ToArray();
        var o = recipe.Optimizer;
        _optimizer = new AdamW(_parameters, Gpt.UsesWeightDecay, o.Betas[0], o.Betas[1], o.Eps, o.WeightDecay);
        _buckets = new GradientBuckets(_parameterList, collectives);
        _batch = new TokenBatch(_corpus, recipe.Batch.Global / worldSize);
        _schedule = new LrSchedule(o.Lr, o.MinLr, recipe.Schedule.WarmupSteps, recipe.Steps);
        _checkpoints = new CheckpointStore(runDirectory, log);
        var phase = PretrainMetrics.StepPhaseSeconds;
        (_dataSeconds, _forwardSeconds, _backwardSeconds) = (phase.WithLabels(PretrainMetrics.Phase.Data),
            phase.WithLabels(PretrainMetrics.Phase.Forward), phase.WithLabels(PretrainMetrics.Phase.Backward));
        (_allReduceSeconds, _optimizerSeconds) = (phase.WithLabels(PretrainMetrics.Phase.AllReduce), phase.WithLabels(PretrainMetrics.Phase.Optimizer));
    }

    /// <summary>Raised on rank 0 after a checkpoint directory is published: (step, directory).</summary>
    public event Action<long, string>? CheckpointWritten;

    /// <summary>Checksum of this replica's parameters now.</summary>
    public string ReplicaChecksumNow() => ReplicaChecksum.Of(_parameters.Select(p => (p.Name, (Tensor)p.Parameter)));

    /// <summary>
    /// Trains up to step min(recipe.steps, <paramref name="maxSteps"/>) — from the newest valid checkpoint
    /// when <paramref name="resume"/> — checkpointing on rank 0, then evaluates on the validation split.
    /// </summary>
    public async Task<TrainingResult> RunAsync(long maxSteps, bool resume, IProgress<StepReport>? progress, CancellationToken ct)
    {
        var last = Math.Min(_recipe.Steps, maxSteps);
        var (step, loss) = resume ? Resume() : (0L, double.NaN);
        PretrainMetrics.Workers.Set(_worldSize);
        var started = Stopwatch.GetTimestamp();
        var firstStep = step;
        _model.train();
        while (step < last)
        {
            ct.ThrowIfCancellationRequested();
            var stepStarted = Stopwatch.GetTimestamp();
            var (stepLoss, lr, norm) = await StepAsync(step, ct);
            (step, loss) = (step + 1, stepLoss);
            var samplesPerSecond = _recipe.Batch.Global / Stopwatch.GetElapsedTime(stepStarted).TotalSeconds;
            PretrainMetrics.StepsTotal.Inc();
            PretrainMetrics.Loss.Set(loss);
            PretrainMetrics.SamplesPerSecond.Set(samplesPerSecond);
            progress?.Report(new StepReport(step, loss, lr, norm, samplesPerSecond));
            if (_rank == 0 && (step % _recipe.Checkpoint.Every == 0 || step == last))
                _lastCheckpoint = WriteCheckpoint(step, loss, lr);
        }
        var elapsed = Stopwatch.GetElapsedTime(started).TotalSeconds;
        var throughput = step > firstStep ? (step - firstStep) * _recipe.Batch.Global / elapsed : 0;
        var eval = new Dictionary<string, double>(await EvaluateAsync(ct));
        eval["perplexity"] = Math.Exp(eval["val_loss"]);
        return new TrainingResult(step, loss, throughput, ReplicaChecksumNow(), eval, Mfu(throughput));
    }

    /// <summary>
    /// Achieved over peak FLOP/s. Every rank runs the same model on an equal share with the same threads,
    /// so the global rate over the summed peaks is each rank's own utilization.
    /// </summary>
    private double Mfu(double samplesPerSecond)
    {
        if (samplesPerSecond <= 0) return 0;
        long parameters = _parameters.Sum(p => p.Parameter.numel());
        double flopsPerSecond = ModelFlops.PerToken(_recipe.Model, parameters) * _recipe.Model.Context * samplesPerSecond;
        return flopsPerSecond / (ModelFlops.MeasuredPeak() * _worldSize);
    }

    /// <summary>
    /// One step: data, forward, backward, allreduce, optimizer. Two dispose scopes rather than one around
    /// the whole step, because scopes and grad mode are per thread and the allreduce's await may come back
    /// on another thread; every tensor made in a step is disposed at the end of its scope.
    /// </summary>
    private async Task<(double Loss, double Lr, double Norm)> StepAsync(long step, CancellationToken ct)
    {
        var t0 = Stopwatch.GetTimestamp();
        using (var scope = NewDisposeScope())
        {
            if (_recipe.Model.Dropout > 0) // dropout is seeded per (step, rank): brief, principle 4
                manual_seed((long)(SplitMix64.Combine((ulong)_recipe.Seed, (ulong)step, (ulong)_rank) >> 1));
            _sampler.RankBatch(step, _rank, _worldSize, _batch.Ids);
            _batch.Load(Split.Train);
            var t1 = Observe(_dataSeconds, t0);
            var loss = _model.Loss(_batch.Inputs, _batch.Targets); // (b, T) → scalar
            var t2 = Observe(_forwardSeconds, t1);
            loss.backward();
            _buckets.Pack(loss.item<float>());
            t0 = Observe(_backwardSeconds, t2);
        }
        await _buckets.ReduceAsync(ct);
        var t3 = Observe(_allReduceSeconds, t0);
        using (var scope = NewDisposeScope())
        {
            var globalLoss = _buckets.Unpack();
            if (!double.IsFinite(globalLoss))
            {
                _model.zero_grad();
                throw new TrainingDivergedException(step, globalLoss, _lastCheckpoint ?? _checkpoints.Published().Select(c => c.Directory).FirstOrDefault());
            }
            var norm = GradientClipping.ClipGlobalNorm(_parameterList, _recipe.Optimizer.GradClip);
            var lr = _schedule.At(step);
            _optimizer.Update(lr);
            _model.zero_grad();
            Observe(_optimizerSeconds, t3);
            return (globalLoss, lr, norm);
        }
    }

    /// <summary>
    /// Mean loss over the first <c>eval.batches</c> global batches of the validation split, in file order
    /// (wrapping round when the split is short); each rank evaluates its part and the sums are allreduced.
    /// </summary>
    private async Task<IReadOnlyDictionary<string, double>> EvaluateAsync(CancellationToken ct)
    {
        _model.eval();
        var total = new float[1];
        var perRank = _batch.Ids.Length;
        for (var i = 0; i < _recipe.Eval.Batches; i++)
        {
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            for (var j = 0; j < perRank; j++)
                _batch.Ids[j] = ((long)i * _recipe.Batch.Global + (long)_rank * perRank + j) % _corpus.ValidationSamples;
            _batch.Load(Split.Validation);
            total[0] += _model.Loss(_batch.Inputs, _batch.Targets).item<float>();
        }
        _model.train();
        if (_worldSize > 1)
            await _collectives.AllReduceSumAsync(total, ct);
        var valLoss = total[0] / ((double)_recipe.Eval.Batches * _worldSize);
        return new Dictionary<string, double> { ["val_loss"] = valLoss, ["bits_per_byte"] = valLoss / Math.Log(2) };
    }

    private string WriteCheckpoint(long step, double loss, double lr)
    {
        var started = Stopwatch.GetTimestamp();
        var state = new TrainingState(step, _sampler.EpochOf(step), _optimizer.Step, lr, _recipe.Seed, loss);
        var model = _parameters.Select(p => (p.Name, (Tensor)p.Parameter)).ToList();
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
            checkpoint.LoadModel(_parameters.ToDictionary(p => p.Name, p => (Tensor)p.Parameter));
            checkpoint.LoadOptimizer(_optimizer.StateTensors().ToDictionary(s => s.Name, s => s.Tensor));
        }
        _optimizer.Step = checkpoint.State.OptimizerStep;
        _lastCheckpoint = checkpoint.Directory;
        _log($"resumed from {checkpoint.Directory} at step {checkpoint.State.Step}");
        return (checkpoint.State.Step, checkpoint.State.Loss);
    }

    private static long Observe(Histogram.Child phase, long since)
    {
        phase.Observe(Stopwatch.GetElapsedTime(since).TotalSeconds);
        return Stopwatch.GetTimestamp();
    }

    public void Dispose()
    {
        _batch.Dispose();
        _buckets.Dispose();
        _optimizer.Dispose();
        _model.Dispose();
    }
}
