using Pretrain.Coordinator.State;
using Pretrain.Data.Preparation;
using Pretrain.Shared.Messages;

namespace Pretrain.Coordinator.Actors;

// What the preparation actor offers inside the coordinator process. None of it crosses the network
// (a plan is a live object), so none of it is an IPretrainMessage.

/// <summary>Starts (or resumes) the preparation of <paramref name="Plan"/>; answered with <see cref="PreparationStartAnswered"/>.</summary>
public sealed record StartPreparation(PreparationSpec Spec, IPreparationPlan Plan);

/// <summary>Answer to <see cref="StartPreparation"/>: refused when the journal holds another preparation.</summary>
public sealed record PreparationStartAnswered(bool Accepted, string? Reason);

/// <summary>In-process query for the whole <see cref="PreparationState"/> (tests, the CLI).</summary>
public sealed record FetchPreparationState
{
    public static readonly FetchPreparationState Instance = new();
}

/// <summary>Where a preparation stands: tasks done of all, input bytes done of all.</summary>
public sealed record PreparationProgress(int TasksDone, int Tasks, long BytesDone, long Bytes);

/// <summary>How a preparation ended: <paramref name="Skipped"/> tasks were already done before this run.</summary>
public sealed record PreparationOutcome(bool Succeeded, int Tasks, int Skipped, long Bytes, string? FailureReason);

/// <summary>
/// Receives what the preparation actor learns, on the actor's thread: implementations must return at
/// once (hand work to another thread, complete a TaskCompletionSource asynchronously).
/// </summary>
public interface IPreparationObserver
{
    /// <summary>The journal and the disk agree; <paramref name="progress"/> counts what earlier runs finished.</summary>
    void OnResumed(PreparationProgress progress);

    /// <summary>A task completed (journaled).</summary>
    void OnProgress(PreparationProgress progress);

    /// <summary>Every task done and the index written, or the preparation failed.</summary>
    void OnOutcome(PreparationOutcome outcome);
}
