using MessagePack;

namespace Pretrain.Shared.Messages;

// The coordinator's job state as a journal snapshot: a restarted coordinator loads the newest one and
// replays only the events after it, instead of every event since the job was defined. Plain arrays and
// dictionaries of the journal's own records, so it needs no formatter of its own; the coordinator's
// JobSnapshots converts it to and from its immutable JobState (Shared cannot see Coordinator's types).

/// <summary>
/// Every field of the coordinator's <c>JobState</c>, in the same order. <see cref="Version"/> says how to
/// read the rest: a field added later gets the next key and a new version, and a reader refuses a version
/// it does not know rather than guess.
/// </summary>
[MessagePackObject]
public sealed record JobSnapshot(
    [property: Key(0)] int Version,
    [property: Key(1)] JobSpec? Job,
    [property: Key(2)] string Phase,                                     // a JobPhase name: Running, Regrouping, ...
    [property: Key(3)] WorkerJoined[] Workers,                           // live workers, in registration order
    [property: Key(4)] long Generation,
    [property: Key(5)] RankAssignment[] Ranks,                           // the ring order of the current generation
    [property: Key(6)] JobSnapshotGeneration[] Generations,
    [property: Key(7)] GenerationStarted? Current,
    [property: Key(8)] long LastStep,
    [property: Key(9)] double LastLoss,
    [property: Key(10)] double LastSamplesPerSecond,
    [property: Key(11)] CheckpointRecorded[] Checkpoints,
    [property: Key(12)] Dictionary<int, ReportFinished> Finished,        // by rank
    [property: Key(13)] WorkerLost[] Lost,
    [property: Key(14)] WorkerLeft[] Left,
    [property: Key(15)] string? FailureReason,
    [property: Key(16)] string RegroupCause,
    [property: Key(17)] string RegroupReason,
    [property: Key(18)] long RegroupAtUnixMs,
    [property: Key(19)] Dictionary<string, long> Held,                   // worker id -> step its replica holds
    [property: Key(20)] string[] Gone,
    [property: Key(21)] Dictionary<string, WorkerSuspected> Suspects,    // by worker id
    [property: Key(22)] long? RecoveringSinceUnixMs,
    [property: Key(23)] double[] Recoveries,
    [property: Key(24)] int CoordinatorRestarts) : IPretrainMessage
{
    /// <summary>The version this build writes, and the only one it reads.</summary>
    public const int CurrentVersion = 1;
}

/// <summary>One generation of the job's history, as the coordinator's <c>GenerationRecord</c> holds it.</summary>
[MessagePackObject]
public sealed record JobSnapshotGeneration(
    [property: Key(0)] long Number,
    [property: Key(1)] int WorldSize,
    [property: Key(2)] long FirstStep,
    [property: Key(3)] string Cause);
