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

    /// <summary>A worker was counted as lost.</summary>
    void OnLost(WorkerLost lost) { }

    /// <summary>A worker left in good order (SIGTERM).</summary>
    void OnLeft(WorkerLeft left) { }

    /// <summary>The running generation ended; the job regroups.</summary>
    void OnRegroup(RegroupStarted regroup) { }

    /// <summary>A generation started (the first, or one after a regroup).</summary>
    void OnGeneration(GenerationStarted generation, JobState state) { }

    /// <summary>This coordinator took the job up from the journal; its members have a window to register again.</summary>
    void OnRestarted(CoordinatorRestarted restarted, JobState state, string recovery) { }

    /// <summary>A member of the recovered job registered again with this (restarted) coordinator, saying what it holds.</summary>
    void OnReconnected(RegisterWorker registration) { }

    /// <summary>The first step after a failure was committed, <paramref name="seconds"/> after the failure was detected.</summary>
    void OnRecovered(long generation, long step, double seconds) { }
}

/// <summary>
/// In-process query for the whole <see cref="JobState"/> (the CLI's status, tests). Never crosses the
/// network, so it is not an <see cref="IPretrainMessage"/>; remote callers use <see cref="FetchJobStatus"/>.
/// </summary>
public sealed record FetchJobState
{
    public static readonly FetchJobState Instance = new();
}
