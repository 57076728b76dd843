using MessagePack;

namespace Pretrain.Shared.Messages;

// The preparation actor's journal. A separate marker from IJobEvent: a preparation is its own
// persistent actor with its own persistence id, and JobState must never see these.

/// <summary>Marker for events written to a preparation's journal.</summary>
public interface IPreparationEvent : IPretrainMessage;

/// <summary>The preparation to run, with its plan's task ids in plan order.</summary>
[MessagePackObject]
public sealed record PreparationDefined(
    [property: Key(0)] PreparationSpec Spec,
    [property: Key(1)] IReadOnlyList<string> TaskIds) : IPreparationEvent;

/// <summary>
/// A task was handed to a worker (or to the coordinator itself). Also the message the worker
/// receives: it runs the task and answers <see cref="ReportTaskCompleted"/>.
/// </summary>
[MessagePackObject]
public sealed record PreparationTaskAssigned(
    [property: Key(0)] string TaskId,
    [property: Key(1)] string WorkerId,
    [property: Key(2)] int Attempt) : IPreparationEvent;

/// <summary>A task's output is complete. Never recorded twice for one task (unless invalidated first).</summary>
[MessagePackObject]
public sealed record PreparationTaskCompleted(
    [property: Key(0)] string TaskId,
    [property: Key(1)] string WorkerId,
    [property: Key(2)] int Attempt,
    [property: Key(3)] long Bytes) : IPreparationEvent;

/// <summary>A task the journal called complete no longer verifies on disk (deleted, corrupted): it is redone.</summary>
[MessagePackObject]
public sealed record PreparationTaskInvalidated(
    [property: Key(0)] string TaskId,
    [property: Key(1)] string Reason) : IPreparationEvent;

/// <summary>A worker is gone; its tasks in flight go back to the pending ones.</summary>
[MessagePackObject]
public sealed record PreparerLost(
    [property: Key(0)] string WorkerId,
    [property: Key(1)] string Reason) : IPreparationEvent;

/// <summary>Every task completed and the plan's index is written: the preparation is over.</summary>
[MessagePackObject]
public sealed record PreparationFinished(
    [property: Key(0)] int Tasks,
    [property: Key(1)] long Bytes) : IPreparationEvent;
