using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Pretrain.Shared.Messages;
using Pretrain.Shared.Recipes;
using Pretrain.Worker.Collectives;
using Pretrain.Worker.Telemetry;
using Pretrain.Worker.Training;

namespace Pretrain.Worker.Host;

/// <summary>
/// The training of one worker process across generations: the replica (<see cref="Trainer"/>) is built
/// once, at the first generation, and kept; each generation brings a ring built from its ranks, runs the
/// trainer on it, and turns how it ended into a <see cref="SessionOutcome"/> for the worker actor. The
/// step it reports as held is what the coordinator regroups from.
/// </summary>
/// <param name="peersAlive">The control plane's word on whether every peer process is alive: collectives wait on slow peers it vouches for.</param>
/// <param name="trace">The process's step timeline (<c>--trace</c>): the replica's phases and every generation's collectives; null: off.</param>
public sealed class TrainingSession(WorkerOptions options, DataPlaneListener listener, StderrLogger log, Func<bool>? peersAlive = null,
    TraceRecorder? trace = null) : IDisposable
{
    static readonly TimeSpan ProgressInterval = TimeSpan.FromMilliseconds(500);

    readonly ICommunicatorFactory _communicators = new RingFactory(listener,
        new CollectiveOptions { Timeout = options.Timeout, PeersAlive = peersAlive, Transport = options.Transport }, log, options.DataPlaneTls, trace);
    Trainer? _trainer;
    Action<ReportCheckpoint>? _checkpointSink;

    /// <summary>This worker's votes at the step boundaries of its generations.</summary>
    public StepControl Control { get; } = new();

    /// <summary>Steps the replica holds, or -1 when it holds nothing worth keeping (before its first state broadcast).</summary>
    public long HeldStep => _trainer is { HoldsState: true } t ? t.Step : -1;

    public async Task<SessionOutcome> RunAsync(JobSpec job, GenerationStarted generation, int rank,
        Action<ReportProgress> progress, Action<ReportCheckpoint> checkpoint, CancellationToken abandon)
    {
        var peers = generation.Ranks.Select(a => new RingPeer(a.Rank, a.WorkerId, a.Host, a.DataPlanePort)).ToList();
        try
        {
            var trainer = Replica(job);
            _checkpointSink = checkpoint;
            var key = (options.Secret ?? throw new InvalidOperationException("a worker without a job secret cannot train (it is never registered)"))
                .GenerationKey(generation.Generation, generation.KeySalt);
            await using (var ring = await _communicators.ConnectAsync(generation.Generation, rank, peers, key, job.TlsDataPlane, abandon))
            {
                // Abandoned: close the ring, so a collective blocked inside a forward pass fails at once too.
                using var abort = abandon.Register(() => _ = ring.DisposeAsync());
                log.Info($"generation {generation.Generation}: rank {rank} of {peers.Count}, ring connected{(job.TlsDataPlane ? " over TLS" : "")}; adopting rank {generation.SourceRank}'s state at step {generation.StartStep}");
                var plan = new GenerationPlan(ring, generation.SourceRank, job.MaxSteps, job.Resume && generation.Cause == "start", Control);
                var outcome = await trainer.RunGenerationAsync(plan, Throttled(job, generation, rank, progress), abandon);
                switch (outcome)
                {
                    case GenerationOutcome.Boundary b:
                        Control.Answered();
                        log.Info($"generation {generation.Generation} ends at step {b.Step}: {b.Reason}");
                        return new SessionOutcome.Boundary(new ReportStepBoundary(options.WorkerId, generation.Generation, b.Step, b.Leaving, b.Reason, b.Leavers));
                    case GenerationOutcome.Finished { Result: var result }:
                        log.Info($"finished at step {result.Step}: loss {result.FinalLoss:0.0000}, replica checksum {result.ReplicaChecksum}, sample digest {result.SampleDigest}");
                        return new SessionOutcome.Finished(new ReportFinished(options.WorkerId, rank, result.Step, result.FinalLoss,
                            result.SamplesPerSecond, result.ReplicaChecksum, result.Eval, result.Mfu, result.FirstLoss, result.SampleDigest));
                    default:
                        throw new InvalidOperationException($"unexpected generation outcome {outcome}");
                }
            }
        }
        catch (Exception) when (abandon.IsCancellationRequested)
        {
            log.Info($"generation {generation.Generation} abandoned by the coordinator; holding step {HeldStep}");
            return new SessionOutcome.Boundary(new ReportStepBoundary(options.WorkerId, generation.Generation, HeldStep, Control.Leaving,
                "the coordinator abandoned the generation"));
        }
        catch (Exception e) when (Find<CollectiveException>(e) is { } lost)
        {
            string lostId = peers.FirstOrDefault(p => p.Rank == lost.PeerRank)?.WorkerId ?? lost.PeerName;
            log.LogWarning("{Message}; holding step {Step} for the next generation", lost.Message, HeldStep);
            return new SessionOutcome.PeerLost(new ReportPeerLost(options.WorkerId, generation.Generation, lost.PeerRank, lostId, lost.Message, HeldStep,
                Suspected: lost.PeerTimedOut));
        }
        catch (Exception e)
        {
            log.LogError(e, "training failed: {Message}", e.Message);
            return new SessionOutcome.Failed(new ReportFailed(options.WorkerId, rank, e.Message));
        }
    }

    /// <summary>The replica, built from the job's recipe at the first generation and kept for the process's life.</summary>
    Trainer Replica(JobSpec job)
    {
        if (_trainer is { } existing) return existing;
        var recipe = RecipeLoader.Parse(job.RecipeYaml, job.RecipePath);   // relative paths: the recipe's folder
        var trainer = new Trainer(recipe, job.RunDirectory, log.Info, options.Timeout, trace);
        trainer.CheckpointWritten += (step, directory) =>
            _checkpointSink?.Invoke(new ReportCheckpoint(options.WorkerId, step, directory, ManifestChecksum(directory)));
        return _trainer = trainer;
    }

    /// <summary>
    /// The coordinator journals rank 0's progress and ignores the rest (replicas agree after every step), so
    /// only rank 0 reports, and at most twice a second plus the first and last step: a report per step would
    /// be a remote message and a journal write per step (50 a second for a tiny model).
    /// </summary>
    static IProgress<StepReport> Throttled(JobSpec job, GenerationStarted generation, int rank, Action<ReportProgress> progress)
    {
        long lastStep = job.MaxSteps, sentAt = 0;
        return new InlineProgress<StepReport>(s =>
        {
            if (rank != 0 || (s.Step != lastStep && sentAt != 0 && Stopwatch.GetElapsedTime(sentAt) < ProgressInterval)) return;
            sentAt = Stopwatch.GetTimestamp();
            progress(new ReportProgress(generation.Ranks[rank].WorkerId, generation.Generation, rank, s.Step, s.Loss, s.SamplesPerSecond));
        });
    }

    static string ManifestChecksum(string directory) =>
        System.IO.Hashing.XxHash64.HashToUInt64(File.ReadAllBytes(Path.Combine(directory, "manifest.json"))).ToString("x16");

    static T? Find<T>(Exception e) where T : Exception
    {
        for (Exception? x = e; x != null; x = x.InnerException)
        {
            if (x is T t) return t;
            if (x is AggregateException a && a.InnerExceptions.Select(Find<T>).FirstOrDefault(i => i != null) is { } inner) return inner;
        }
        return null;
    }

    public void Dispose() => _trainer?.Dispose();

    /// <summary>Reports synchronously on the trainer's thread (Progress&lt;T&gt; would post and reorder).</summary>
    sealed class InlineProgress<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }
}
