using Pretrain.Shared.Messages;

namespace Pretrain.Coordinator.State;

/// <summary>
/// How a job ended, for the CLI's summary.json: every rank's final report (rank order) when it
/// completed, or the failure reason.
/// </summary>
public sealed record JobOutcome(
    bool Succeeded,
    JobSpec? Job,
    long Generation,
    long Steps,
    IReadOnlyList<ReportFinished> Ranks,
    IReadOnlyList<CheckpointRecorded> Checkpoints,
    string? FailureReason)
{
    public static JobOutcome From(JobState state) => new(
        state.Phase == JobPhase.Completed,
        state.Job,
        state.Generation,
        state.LastStep,
        [.. state.Finished.Values],
        state.Checkpoints,
        state.FailureReason);
}
