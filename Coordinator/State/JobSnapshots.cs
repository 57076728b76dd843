using System.Collections.Immutable;
using Pretrain.Shared.Messages;

namespace Pretrain.Coordinator.State;

/// <summary>
/// <see cref="JobState"/> to and from its journal snapshot, <see cref="JobSnapshot"/>: exact inverses, so a
/// coordinator that starts from a snapshot and replays the events after it holds the state it would have
/// folded from the whole journal. Pure; the job actor decides when to save one.
/// </summary>
public static class JobSnapshots
{
    public static JobSnapshot ToSnapshot(JobState state) => new(
        JobSnapshot.CurrentVersion,
        state.Job,
        state.Phase.ToString(),
        [.. state.Workers],
        state.Generation,
        [.. state.Ranks],
        [.. state.Generations.Select(g => new JobSnapshotGeneration(g.Number, g.WorldSize, g.FirstStep, g.Cause))],
        state.Current,
        state.LastStep,
        state.LastLoss,
        state.LastSamplesPerSecond,
        [.. state.Checkpoints],
        state.Finished.ToDictionary(kv => kv.Key, kv => kv.Value),
        [.. state.Lost],
        [.. state.Left],
        state.FailureReason,
        state.RegroupCause,
        state.RegroupReason,
        state.RegroupAtUnixMs,
        state.Held.ToDictionary(kv => kv.Key, kv => kv.Value),
        [.. state.Gone],
        state.Suspects.ToDictionary(kv => kv.Key, kv => kv.Value),
        state.RecoveringSinceUnixMs,
        [.. state.Recoveries],
        state.CoordinatorRestarts);

    /// <summary>The state a snapshot holds. Throws <see cref="InvalidDataException"/> for a version or phase this build does not know.</summary>
    public static JobState ToState(JobSnapshot snapshot)
    {
        if (snapshot.Version != JobSnapshot.CurrentVersion)
            throw new InvalidDataException(
                $"The journal's job snapshot has version {snapshot.Version}; this build reads version {JobSnapshot.CurrentVersion} only. " +
                "Run the coordinator version that wrote it, or delete the snapshot to recover from the events alone.");
        if (!Enum.TryParse<JobPhase>(snapshot.Phase, ignoreCase: false, out var phase) || !Enum.IsDefined(phase)
            || snapshot.Phase != phase.ToString())
            throw new InvalidDataException($"The journal's job snapshot names an unknown job phase '{snapshot.Phase}'.");

        return new JobState
        {
            Job = snapshot.Job,
            Phase = phase,
            Workers = [.. Required(snapshot.Workers, nameof(snapshot.Workers))],
            Generation = snapshot.Generation,
            Ranks = [.. Required(snapshot.Ranks, nameof(snapshot.Ranks))],
            Generations = [.. Required(snapshot.Generations, nameof(snapshot.Generations))
                .Select(g => new GenerationRecord(g.Number, g.WorldSize, g.FirstStep, g.Cause))],
            Current = snapshot.Current,
            LastStep = snapshot.LastStep,
            LastLoss = snapshot.LastLoss,
            LastSamplesPerSecond = snapshot.LastSamplesPerSecond,
            Checkpoints = [.. Required(snapshot.Checkpoints, nameof(snapshot.Checkpoints))],
            Finished = Required(snapshot.Finished, nameof(snapshot.Finished)).ToImmutableSortedDictionary(),
            Lost = [.. Required(snapshot.Lost, nameof(snapshot.Lost))],
            Left = [.. Required(snapshot.Left, nameof(snapshot.Left))],
            FailureReason = snapshot.FailureReason,
            RegroupCause = Required(snapshot.RegroupCause, nameof(snapshot.RegroupCause)),
            RegroupReason = Required(snapshot.RegroupReason, nameof(snapshot.RegroupReason)),
            RegroupAtUnixMs = snapshot.RegroupAtUnixMs,
            Held = Required(snapshot.Held, nameof(snapshot.Held)).ToImmutableDictionary(),
            Gone = ImmutableHashSet.CreateRange(Required(snapshot.Gone, nameof(snapshot.Gone))),
            Suspects = Required(snapshot.Suspects, nameof(snapshot.Suspects)).ToImmutableDictionary(),
            RecoveringSinceUnixMs = snapshot.RecoveringSinceUnixMs,
            Recoveries = [.. Required(snapshot.Recoveries, nameof(snapshot.Recoveries))],
            CoordinatorRestarts = snapshot.CoordinatorRestarts,
        };
    }

    // The bytes come from the journal: a field written as nil is damage, not an empty collection.
    private static T Required<T>(T? value, string field) where T : class =>
        value ?? throw new InvalidDataException($"The journal's job snapshot has no {field}.");
}
