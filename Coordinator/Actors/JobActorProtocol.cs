using Pretrain.Coordinator.State;
using Pretrain.Shared.Messages;

namespace Pretrain.Coordinator.Actors;

// What the job actor offers inside the coordinator process, besides the wire protocol of Shared.

/// <summary>
/// Receives what the job actor learns, on the actor's thread: implementations must return at once
/// (hand work to another thread, complete a TaskCompletionSource asynchronously).
/// </summary>
public interface IJobObserver
{
    /// <summary>Every rank's progress report, as it arrives (persisted or not).</summary>
    void OnProgress(ReportProgress report);

    /// <summary>The job completed or failed; also called after recovery if the journal says so.</summary>
    void OnOutcome(JobOutcome outcome);
}

/// <summary>
/// In-process query for the whole <see cref="JobState"/> (the CLI's status, tests). Never crosses the
/// network, so it is not an <see cref="IPretrainMessage"/>; remote callers use <see cref="FetchJobStatus"/>.
/// </summary>
public sealed record FetchJobState
{
    public static readonly FetchJobState Instance = new();
}
