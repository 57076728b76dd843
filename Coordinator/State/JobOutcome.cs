using Pretrain.Shared.Messages;

namespace Pretrain.Coordinator.State;

/// <summary>
/// How a job ended, for the CLI's summary.json: every rank's final report (rank order) when it
/// completed, or the failure reason; the generations it went through and how long recoveries took.
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
    public IReadOnlyList<GenerationRecord> Generations { get; init; } = [];
    public IReadOnlyList<double> Recoveries { get; init; } = [];
    /// <summary>The last generation's world size (0 before the first generation).</summary>
    public int WorldSize { get; init; }

    public static JobOutcome From(JobState state) => new(
        state.Phase == JobPhase.Completed,
        state.Job,
        state.Generation,
        state.LastStep,
        [.. state.Finished.Values],
        state.Checkpoints,
        state.FailureReason)
    {
        Generations = state.Generations,
        Recoveries = state.Recoveries,
        WorldSize = state.Ranks.Count,
    };
}
