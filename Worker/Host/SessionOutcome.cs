using Pretrain.Shared.Messages;

namespace Pretrain.Worker.Host;

/// <summary>How one training session (one generation) of a worker ended.</summary>
public abstract record SessionOutcome
{
    public sealed record Finished(ReportFinished Report) : SessionOutcome;
    public sealed record PeerLost(ReportPeerLost Report) : SessionOutcome;
    public sealed record Failed(ReportFailed Report) : SessionOutcome;
    public sealed record Cancelled(string Reason) : SessionOutcome;
}

/// <summary>Runs the training of one generation; the actor pipes its outcome back to itself.</summary>
public delegate Task<SessionOutcome> RunSession(
    JobSpec job, GenerationStarted generation, int rank, Action<ReportProgress> progress, Action<ReportCheckpoint> checkpoint,
    CancellationToken ct);
