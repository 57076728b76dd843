using Pretrain.Shared.Messages;

namespace Pretrain.Coordinator.State;

/// <summary>What a preparation command leads to: events to persist, or a refusal.</summary>
public sealed record PreparationDecision(IReadOnlyList<IPreparationEvent> Events, string? Refusal = null)
{
    public static readonly PreparationDecision None = new([]);
    public static PreparationDecision Of(IEnumerable<IPreparationEvent> events) => new([.. events]);
    public static PreparationDecision Refuse(string reason) => new([], reason);
}

/// <summary>A task as the decisions see it: id, input bytes, and whether its output verifies on disk now.</summary>
public sealed record TaskOnDisk(string Id, long Bytes, bool Done);

/// <summary>
/// The preparation's decisions, pure: the actor persists the events, applies them with
/// <see cref="PreparationState.Apply"/>, and does the messaging and the running.
/// </summary>
public static class PreparationDecisions
{
    /// <summary>Defines the preparation; the same spec again (a re-run) is a resume, another spec is refused.</summary>
    public static PreparationDecision Define(PreparationState state, PreparationSpec spec, IReadOnlyList<string> taskIds)
    {
        if (!state.IsDefined) return PreparationDecision.Of([new PreparationDefined(spec, taskIds)]);
        if (!state.Spec!.Equals(spec))
            return PreparationDecision.Refuse($"this journal holds a preparation of {state.Spec.Kind} from {string.Join(", ", state.Spec.Inputs)} with other options; use another output folder or journal");
        return state.TaskIds.SequenceEqual(taskIds)
            ? PreparationDecision.None
            : PreparationDecision.Refuse($"the same spec now plans {taskIds.Count} tasks where the journal has {state.TaskIds.Count}: the inputs changed since the interrupted run");
    }

    /// <summary>
    /// Reconciles the journal with the disk before any task runs: a completion whose output no longer
    /// verifies is invalidated (redone), and an output that verifies without a journaled completion
    /// (the process died between the atomic write and the journal) is recorded, not redone.
    /// </summary>
    public static PreparationDecision Verify(PreparationState state, IEnumerable<TaskOnDisk> tasks)
    {
        if (state.IsFinished) return PreparationDecision.None;
        var events = new List<IPreparationEvent>();
        foreach (var task in tasks)
        {
            bool journaled = state.Completed.ContainsKey(task.Id);
            if (journaled && !task.Done) events.Add(new PreparationTaskInvalidated(task.Id, "its output is missing or does not verify"));
            else if (!journaled && task.Done) events.Add(new PreparationTaskCompleted(task.Id, PreparationState.FoundOnDisk, 0, task.Bytes));
        }
        return PreparationDecision.Of(events);
    }

    /// <summary>
    /// One pending task to each idle worker, in plan order. With no worker connected the coordinator
    /// is the one worker; once workers connect it finishes its task in flight and takes no more.
    /// </summary>
    public static PreparationDecision Assign(PreparationState state, IReadOnlyList<string> liveWorkers)
    {
        if (!state.IsDefined || state.IsFinished) return PreparationDecision.None;
        IReadOnlyList<string> candidates = liveWorkers.Count > 0 ? liveWorkers : [PreparationState.Coordinator];
        var idle = candidates.Where(w => !state.IsBusy(w));
        return PreparationDecision.Of(idle.Zip(state.Pending, (worker, task) =>
            new PreparationTaskAssigned(task, worker, state.Attempts.GetValueOrDefault(task) + 1)));
    }

    /// <summary>
    /// Records a completion once. A late report for a task already complete (a lost worker that was
    /// not dead after all, a reassigned task) changes nothing: outputs are deterministic and atomic.
    /// </summary>
    public static PreparationDecision Complete(PreparationState state, ReportTaskCompleted c)
    {
        if (!state.IsDefined || state.Completed.ContainsKey(c.TaskId)) return PreparationDecision.None;
        if (!state.TaskIds.Contains(c.TaskId)) return PreparationDecision.Refuse($"unknown task '{c.TaskId}'");
        return PreparationDecision.Of([new PreparationTaskCompleted(c.TaskId, c.WorkerId, c.Attempt, c.Bytes)]);
    }

    /// <summary>A lost worker's tasks in flight go back to the pending ones.</summary>
    public static PreparationDecision Lose(PreparationState state, string workerId, string reason) =>
        state.IsBusy(workerId) ? PreparationDecision.Of([new PreparerLost(workerId, reason)]) : PreparationDecision.None;

    /// <summary>After the plan's Finish (index.json) succeeded.</summary>
    public static PreparationDecision Finish(PreparationState state) =>
        state.AllCompleted && !state.IsFinished
            ? PreparationDecision.Of([new PreparationFinished(state.TaskIds.Count, state.CompletedBytes)])
            : PreparationDecision.None;
}
