using System.Collections.Immutable;
using Pretrain.Shared.Messages;

namespace Pretrain.Coordinator.State;

/// <summary>
/// A preparation's whole view, rebuilt from the journal by folding <see cref="Apply"/> over its
/// events: which tasks exist, which completed (once each), which are in flight and where. Immutable,
/// so <see cref="PreparationDecisions"/> are pure functions testable without an ActorSystem.
/// </summary>
public sealed record PreparationState
{
    /// <summary>The worker id under which the coordinator runs tasks itself when no worker is connected.</summary>
    public const string Coordinator = "coordinator";

    /// <summary>The worker id of tasks found complete on disk without a journaled completion (killed between write and journal).</summary>
    public const string FoundOnDisk = "found-on-disk";

    public static readonly PreparationState Empty = new();

    public PreparationSpec? Spec { get; init; }

    /// <summary>Every task of the plan, in plan order: tasks are handed out in this order.</summary>
    public ImmutableList<string> TaskIds { get; init; } = [];

    public ImmutableDictionary<string, PreparationTaskCompleted> Completed { get; init; } =
        ImmutableDictionary<string, PreparationTaskCompleted>.Empty;

    /// <summary>Tasks assigned and not completed, by task id. Not trusted across a restart (<see cref="Recovered"/>).</summary>
    public ImmutableDictionary<string, PreparationTaskAssigned> InFlight { get; init; } =
        ImmutableDictionary<string, PreparationTaskAssigned>.Empty;

    /// <summary>How many times each task was assigned: the next assignment's attempt number.</summary>
    public ImmutableDictionary<string, int> Attempts { get; init; } = ImmutableDictionary<string, int>.Empty;

    public long CompletedBytes { get; init; }
    public bool IsFinished { get; init; }

    public bool IsDefined => Spec is not null;
    public bool AllCompleted => IsDefined && Completed.Count == TaskIds.Count;
    public bool IsBusy(string workerId) => InFlight.Values.Any(a => a.WorkerId == workerId);

    /// <summary>Tasks neither completed nor in flight, in plan order.</summary>
    public IEnumerable<string> Pending => TaskIds.Where(id => !Completed.ContainsKey(id) && !InFlight.ContainsKey(id));

    public PreparationState Apply(IPreparationEvent e) => e switch
    {
        PreparationDefined d => this with { Spec = d.Spec, TaskIds = [.. d.TaskIds] },
        PreparationTaskAssigned a => this with
        {
            InFlight = InFlight.SetItem(a.TaskId, a),
            Attempts = Attempts.SetItem(a.TaskId, a.Attempt),
        },
        PreparationTaskCompleted c => this with
        {
            Completed = Completed.SetItem(c.TaskId, c),
            InFlight = InFlight.Remove(c.TaskId),
            CompletedBytes = CompletedBytes + c.Bytes,
        },
        PreparationTaskInvalidated i => Completed.TryGetValue(i.TaskId, out var done)
            ? this with { Completed = Completed.Remove(i.TaskId), CompletedBytes = CompletedBytes - done.Bytes }
            : this,
        PreparerLost l => this with { InFlight = InFlight.RemoveRange(InFlight.Where(kv => kv.Value.WorkerId == l.WorkerId).Select(kv => kv.Key)) },
        PreparationFinished => this with { IsFinished = true },
        _ => throw new ArgumentException($"PreparationState does not know event {e.GetType().Name}", nameof(e)),
    };

    public PreparationState ApplyAll(IEnumerable<IPreparationEvent> events) => events.Aggregate(this, (s, e) => s.Apply(e));

    /// <summary>
    /// After a coordinator restart: assignments of the previous incarnation are pending again. Their
    /// workers were told by a coordinator that is gone, and a task's output is written atomically, so
    /// redoing one is safe while trusting one could leave it undone forever.
    /// </summary>
    public PreparationState Recovered() => this with { InFlight = InFlight.Clear() };
}
