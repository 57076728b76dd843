using MessagePack;

namespace Pretrain.Shared.Messages;

// The coordinator's journal: past-tense events its job state is rebuilt from after a restart
// (brief, principle 2). They live in Shared because the serializer's registry must name them, and
// they are IPretrainMessage so the one serializer binding covers the journal too.

/// <summary>Marker for events written to the coordinator's journal.</summary>
public interface IJobEvent : IPretrainMessage;

/// <summary>The job to run was submitted.</summary>
[MessagePackObject]
public sealed record JobDefined(
    [property: Key(0)] JobSpec Job) : IJobEvent;

/// <summary>A worker joined the pool waiting for (or belonging to) the current generation.</summary>
[MessagePackObject]
public sealed record WorkerJoined(
    [property: Key(0)] string WorkerId,
    [property: Key(1)] string Host,
    [property: Key(2)] int DataPlanePort,
    [property: Key(3)] int MetricsPort,
    [property: Key(4)] int ProcessId,
    [property: Key(5)] string Incarnation = "") : IJobEvent;

/// <summary>A worker is gone: its node became unreachable, or a peer's collective failed on it.</summary>
[MessagePackObject]
public sealed record WorkerLost(
    [property: Key(0)] string WorkerId,
    [property: Key(1)] long Generation,
    [property: Key(2)] string Reason,
    [property: Key(3)] string DetectedBy) : IJobEvent;

/// <summary>Rank 0 of the current generation completed an optimizer step.</summary>
[MessagePackObject]
public sealed record StepCommitted(
    [property: Key(0)] long Generation,
    [property: Key(1)] long Step,
    [property: Key(2)] double Loss,
    [property: Key(3)] double SamplesPerSecond,
    [property: Key(4)] long AtUnixMs = 0) : IJobEvent;   // when the coordinator received it (recovery time)

/// <summary>A verified checkpoint exists on disk for this step.</summary>
[MessagePackObject]
public sealed record CheckpointRecorded(
    [property: Key(0)] string WorkerId,
    [property: Key(1)] long Step,
    [property: Key(2)] string Path,
    [property: Key(3)] string ManifestChecksum) : IJobEvent;

/// <summary>One rank finished; its report is kept whole for summary.json.</summary>
[MessagePackObject]
public sealed record WorkerFinished(
    [property: Key(0)] ReportFinished Report) : IJobEvent;

/// <summary>Every rank of the current generation finished.</summary>
[MessagePackObject]
public sealed record JobCompleted(
    [property: Key(0)] long Generation,
    [property: Key(1)] long Step) : IJobEvent;

/// <summary>
/// The current generation is over because a member was lost, left, or a newcomer waits: the job
/// regroups. Survivors report the step they hold; then the next generation starts.
/// </summary>
[MessagePackObject]
public sealed record RegroupStarted(
    [property: Key(0)] long Generation,
    [property: Key(1)] string Cause,        // lost, left or joined
    [property: Key(2)] string Reason,       // what happened, for the terminal and summary.json
    [property: Key(3)] long AtUnixMs) : IJobEvent;

/// <summary>A member of the regrouping generation reported the number of steps its replica holds.</summary>
[MessagePackObject]
public sealed record StepHeld(
    [property: Key(0)] string WorkerId,
    [property: Key(1)] long Generation,
    [property: Key(2)] long Step) : IJobEvent;

/// <summary>
/// A rank blamed a worker on a timeout: it is counted lost unless it reports its step within the
/// suspect grace (a live rank that waited on the frozen one reports at once when the generation is abandoned).
/// </summary>
[MessagePackObject]
public sealed record WorkerSuspected(
    [property: Key(0)] string WorkerId,
    [property: Key(1)] long Generation,
    [property: Key(2)] string Reason,
    [property: Key(3)] string DetectedBy,
    [property: Key(4)] long AtUnixMs) : IJobEvent;

/// <summary>A worker left in good order (SIGTERM, a pod preempted): not a failure.</summary>
[MessagePackObject]
public sealed record WorkerLeft(
    [property: Key(0)] string WorkerId,
    [property: Key(1)] long Generation,
    [property: Key(2)] long Step) : IJobEvent;

/// <summary>The job cannot go on.</summary>
[MessagePackObject]
public sealed record JobFailed(
    [property: Key(0)] long Generation,
    [property: Key(1)] string Reason) : IJobEvent;

/// <summary>
/// A coordinator process took the job up from the journal (it was restarted, or another replaced it);
/// <paramref name="Generation"/> and <paramref name="Step"/> are where the journal said the job was.
/// The job's members have a reconnect window to register again; a regroup's clock restarts from here.
/// </summary>
[MessagePackObject]
public sealed record CoordinatorRestarted(
    [property: Key(0)] long Generation,
    [property: Key(1)] long Step,
    [property: Key(2)] long AtUnixMs) : IJobEvent;
