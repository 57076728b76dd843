using Pretrain.Shared.Messages;

namespace Pretrain.Coordinator.State;

/// <summary>
/// Coordinator-internal command: the actor's death watch saw a worker's actor terminate (its node was
/// downed or left). Never crosses the network, so it is not an <see cref="IPretrainMessage"/>.
/// </summary>
public sealed record LoseWorker(string WorkerId, string Reason, string DetectedBy);

/// <summary>What a command leads to: events to persist, or a refusal to send back.</summary>
public sealed record Decision(IReadOnlyList<IJobEvent> Events, string? Refusal = null)
{
    public static readonly Decision None = new([]);
    public static Decision Of(params IJobEvent[] events) => new(events);
    public static Decision Refuse(string reason) => new([], reason);
}

/// <summary>
/// The coordinator's decisions: given the state and a command, which events happen. Pure; the job
/// actor persists the events, applies them with <see cref="JobState.Apply"/> and does the messaging.
/// </summary>
public static class JobDecisions
{
    public static Decision Decide(JobState state, object command) => command switch
    {
        DefineJob c => Define(state, c),
        RegisterWorker c => Register(state, c),
        ReportProgress c => Progress(state, c),
        ReportCheckpoint c => Checkpoint(state, c),
        ReportPeerLost c => Lose(state, LostWorkerId(state, c), c.Reason, c.WorkerId),
        LoseWorker c => Lose(state, c.WorkerId, c.Reason, c.DetectedBy),
        ReportFinished c => Finish(state, c),
        ReportFailed c => Fail(state, c),
        _ => throw new ArgumentException($"No decision for command {command.GetType().Name}", nameof(command)),
    };

    private static Decision Define(JobState state, DefineJob c)
    {
        if (state.Job is null)
            return c.Job.WorldSize < 1 ? Decision.Refuse($"world size must be at least 1, got {c.Job.WorldSize}") : Decision.Of(new JobDefined(c.Job));
        // Re-submitting the same job (a CLI retry, a restarted coordinator) is not an error.
        return state.Job == c.Job
            ? Decision.None
            : Decision.Refuse($"a different job is already defined in this journal (recipe hash {state.Job.RecipeHash}, world size {state.Job.WorldSize})");
    }

    private static Decision Register(JobState state, RegisterWorker c)
    {
        if (state.Job is null) return Decision.Refuse("no job is defined yet");
        if (state.IsOver) return Decision.Refuse($"the job is {state.Phase.ToString().ToLowerInvariant()}");
        if (state.IsMember(c.WorkerId)) return Decision.None; // a retried registration
        if (state.Phase == JobPhase.Running)
            return Decision.Refuse($"generation {state.Generation} is running with all {state.Ranks.Count} ranks; joining a running job is not supported yet");

        var joined = new WorkerJoined(c.WorkerId, c.Host, c.DataPlanePort, c.MetricsPort, c.ProcessId);
        var members = state.Workers.Add(joined);
        if (members.Count < state.Job.WorldSize) return Decision.Of(joined);

        // The last expected worker arrived: ranks follow registration order, and so does the ring.
        var ranks = members.Select((w, rank) => new RankAssignment(rank, w.WorkerId, w.Host, w.DataPlanePort)).ToList();
        return Decision.Of(joined, new GenerationStarted(state.Generation + 1, ranks));
    }

    private static Decision Progress(JobState state, ReportProgress c) =>
        // Rank 0 speaks for the job: after every step all replicas agree (brief, principle 5).
        state.Phase == JobPhase.Running && c.Generation == state.Generation && c.Rank == 0 && c.Step > state.LastStep
            ? Decision.Of(new StepCommitted(c.Generation, c.Step, c.Loss, c.SamplesPerSecond))
            : Decision.None;

    private static Decision Checkpoint(JobState state, ReportCheckpoint c) =>
        state.Job is not null && c.Step > state.LastCheckpointStep
            ? Decision.Of(new CheckpointRecorded(c.WorkerId, c.Step, c.Path, c.ManifestChecksum))
            : Decision.None;

    // A worker's collective knows the rank it lost for sure; the worker id is taken from the
    // generation's ranks when the report leaves it empty.
    private static string LostWorkerId(JobState state, ReportPeerLost c) =>
        string.IsNullOrEmpty(c.LostWorkerId) && c.Generation == state.Generation
            ? state.Ranks.Find(r => r.Rank == c.LostRank)?.WorkerId ?? ""
            : c.LostWorkerId;

    private static Decision Lose(JobState state, string workerId, string reason, string detectedBy)
    {
        if (state.IsOver || !state.IsMember(workerId)) return Decision.None;
        var lost = new WorkerLost(workerId, state.Generation, reason, detectedBy);
        if (state.Phase == JobPhase.Rendezvous) return Decision.Of(lost); // it only waited; others may still come

        var rank = state.RankOf(workerId);
        // A worker that already reported its final figures may exit; that is not a loss.
        if (rank is { } r && state.Finished.ContainsKey(r)) return Decision.None;
        return Decision.Of(lost, new JobFailed(state.Generation,
            $"worker {workerId} (rank {rank?.ToString() ?? "?"}) lost in generation {state.Generation}: {reason} (detected by {detectedBy})"));
    }

    private static Decision Finish(JobState state, ReportFinished c)
    {
        if (state.Phase != JobPhase.Running || state.RankOf(c.WorkerId) != c.Rank || state.Finished.ContainsKey(c.Rank))
            return Decision.None;
        var finished = new WorkerFinished(c);
        if (state.Finished.Count + 1 < state.Ranks.Count) return Decision.Of(finished);
        var lastStep = state.Finished.Values.Select(f => f.Step).Append(c.Step).Max();
        return Decision.Of(finished, new JobCompleted(state.Generation, lastStep));
    }

    private static Decision Fail(JobState state, ReportFailed c) =>
        state.Job is null || state.IsOver
            ? Decision.None
            : Decision.Of(new JobFailed(state.Generation, $"worker {c.WorkerId} (rank {c.Rank}) failed: {c.Reason}"));
}
