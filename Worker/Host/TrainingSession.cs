using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Pretrain.Shared.Messages;
using Pretrain.Shared.Recipes;
using Pretrain.Worker.Collectives;
using Pretrain.Worker.Training;

namespace Pretrain.Worker.Host;

/// <summary>
/// One generation of training on this worker: builds the ring from the generation's ranks, runs the
/// trainer, and turns how it ended into a <see cref="SessionOutcome"/> for the worker actor.
/// </summary>
public sealed class TrainingSession(WorkerOptions options, DataPlaneListener listener, StderrLogger log)
{
    static readonly TimeSpan ProgressInterval = TimeSpan.FromMilliseconds(500);

    public async Task<SessionOutcome> RunAsync(JobSpec job, GenerationStarted generation, int rank,
        Action<ReportProgress> progress, Action<ReportCheckpoint> checkpoint, CancellationToken ct)
    {
        var peers = generation.Ranks.Select(a => new RingPeer(a.Rank, a.WorkerId, a.Host, a.DataPlanePort)).ToList();
        try
        {
            var recipe = RecipeLoader.Parse(job.RecipeYaml, job.RecipePath);   // relative paths: the recipe's folder
            await using var ring = new RingCommunicator(listener, generation.Generation, rank, peers,
                new CollectiveOptions { Timeout = options.Timeout }, log);
            await ring.ConnectAsync(ct);
            log.Info($"generation {generation.Generation}: rank {rank} of {peers.Count}, ring connected");

            using var trainer = new Trainer(recipe, rank, peers.Count, ring, job.RunDirectory, log.Info, options.Timeout);
            trainer.CheckpointWritten += (step, directory) =>
                checkpoint(new ReportCheckpoint(options.WorkerId, step, directory, ManifestChecksum(directory)));
            // The coordinator journals rank 0's progress and ignores the rest (replicas agree after every
            // step), so only rank 0 reports, and at most twice a second plus the last step: a report per
            // step would be a remote message and a journal write per step (50 a second for a tiny model).
            long lastStep = Math.Min(job.MaxSteps, recipe.Steps), sentAt = 0;
            var reports = new InlineProgress<StepReport>(s =>
            {
                if (rank != 0 || (s.Step != lastStep && Stopwatch.GetElapsedTime(sentAt) < ProgressInterval)) return;
                sentAt = Stopwatch.GetTimestamp();
                progress(new ReportProgress(options.WorkerId, generation.Generation, rank, s.Step, s.Loss, s.SamplesPerSecond));
            });
            var result = await trainer.RunAsync(job.MaxSteps, job.Resume, reports, ct);
            log.Info($"finished at step {result.Step}: loss {result.FinalLoss:0.0000}, replica checksum {result.ReplicaChecksum}");
            return new SessionOutcome.Finished(new ReportFinished(options.WorkerId, rank, result.Step, result.FinalLoss,
                result.SamplesPerSecond, result.ReplicaChecksum, result.Eval, result.Mfu, result.FirstLoss));
        }
        catch (Exception e) when (Find<CollectiveException>(e) is { } lost)
        {
            string lostId = peers.FirstOrDefault(p => p.Rank == lost.PeerRank)?.WorkerId ?? lost.PeerName;
            log.LogError("{Message}", lost.Message);
            return new SessionOutcome.PeerLost(new ReportPeerLost(options.WorkerId, generation.Generation, lost.PeerRank, lostId, lost.Message));
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            return new SessionOutcome.Cancelled("training was cancelled");
        }
        catch (Exception e)
        {
            log.LogError(e, "training failed: {Message}", e.Message);
            return new SessionOutcome.Failed(new ReportFailed(options.WorkerId, rank, e.Message));
        }
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

    /// <summary>Reports synchronously on the trainer's thread (Progress&lt;T&gt; would post and reorder).</summary>
    sealed class InlineProgress<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }
}
