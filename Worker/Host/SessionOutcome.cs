using Pretrain.Shared.Messages;

namespace Pretrain.Worker.Host;

/// <summary>How one generation of a worker ended.</summary>
public abstract record SessionOutcome
{
    /// <summary>The job's last step is done: the final report.</summary>
    public sealed record Finished(ReportFinished Report) : SessionOutcome;

    /// <summary>A peer was lost; the replica is kept for the next generation.</summary>
    public sealed record PeerLost(ReportPeerLost Report) : SessionOutcome;

    /// <summary>The generation ended at a step boundary (agreed, or abandoned by the coordinator); leaving or waiting for the next.</summary>
    public sealed record Boundary(ReportStepBoundary Report) : SessionOutcome;

    /// <summary>Training failed for a reason no regroup can cure (bad data, divergence, a bug).</summary>
    public sealed record Failed(ReportFailed Report) : SessionOutcome;

    /// <summary>The worker process is stopping.</summary>
    public sealed record Cancelled(string Reason) : SessionOutcome;
}

/// <summary>
/// Runs one generation of training on the worker's long-lived replica; the actor pipes its outcome back
/// to itself. <paramref name="abandon"/> ends the generation at once (the coordinator gave it up), the
/// session's own stop token ends the process's training.
/// </summary>
public delegate Task<SessionOutcome> RunGeneration(
    JobSpec job, GenerationStarted generation, int rank, Action<ReportProgress> progress, Action<ReportCheckpoint> checkpoint,
    CancellationToken abandon);
