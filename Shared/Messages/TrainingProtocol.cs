using MessagePack;

namespace Pretrain.Shared.Messages;

// Worker → coordinator reports during and after training. Small and infrequent: tensors never
// travel here (brief, principle 1).

/// <summary>Progress of one rank after a step. Rank 0's report is what the terminal shows.</summary>
[MessagePackObject]
public sealed record ReportProgress(
    [property: Key(0)] string WorkerId,
    [property: Key(1)] long Generation,
    [property: Key(2)] int Rank,
    [property: Key(3)] long Step,
    [property: Key(4)] double Loss,
    [property: Key(5)] double SamplesPerSecond) : IPretrainMessage;

/// <summary>Rank 0 finished writing and verifying a checkpoint directory.</summary>
[MessagePackObject]
public sealed record ReportCheckpoint(
    [property: Key(0)] string WorkerId,
    [property: Key(1)] long Step,
    [property: Key(2)] string Path,
    [property: Key(3)] string ManifestChecksum) : IPretrainMessage;

/// <summary>
/// A collective failed because a peer is gone. The worker keeps its replica, which holds
/// <see cref="HeldStep"/> committed steps, and waits for the next generation.
/// </summary>
[MessagePackObject]
public sealed record ReportPeerLost(
    [property: Key(0)] string WorkerId,
    [property: Key(1)] long Generation,
    [property: Key(2)] int LostRank,
    [property: Key(3)] string LostWorkerId,
    [property: Key(4)] string Reason,
    [property: Key(5)] long HeldStep = 0,
    // The blame rests on a timeout, not a closed connection: the named peer may be alive, waiting on another.
    [property: Key(6)] bool Suspected = false) : IPretrainMessage;

/// <summary>
/// The rank stopped its generation at a step boundary without a failure: the ring agreed to stop
/// (a newcomer waits, a member leaves) or the coordinator abandoned the generation. It holds
/// <see cref="HeldStep"/> committed steps and waits for the next generation, unless it is
/// <see cref="Leaving"/> (SIGTERM): then it exits once this is acknowledged.
/// </summary>
[MessagePackObject]
public sealed record ReportStepBoundary(
    [property: Key(0)] string WorkerId,
    [property: Key(1)] long Generation,
    [property: Key(2)] long HeldStep,
    [property: Key(3)] bool Leaving,
    [property: Key(4)] string Reason,
    [property: Key(5)] int Leavers = 0) : IPretrainMessage;   // members the ring's votes said are leaving at this boundary

/// <summary>
/// Coordinator → the ranks of a generation: a worker is waiting to join; stop at the next step
/// boundary the ring agrees on and report it (<see cref="ReportStepBoundary"/>).
/// </summary>
[MessagePackObject]
public sealed record RequestStepBoundary(
    [property: Key(0)] long Generation,
    [property: Key(1)] string Reason) : IPretrainMessage;

/// <summary>
/// Coordinator → the ranks of a generation: the generation is over (a member was lost); stop now,
/// drop the step in flight and report the step held (<see cref="ReportStepBoundary"/>).
/// </summary>
[MessagePackObject]
public sealed record AbandonGeneration(
    [property: Key(0)] long Generation,
    [property: Key(1)] string Reason) : IPretrainMessage;

/// <summary>A rank finished the job: its final figures and the checksum of its replica's parameters.</summary>
[MessagePackObject]
public sealed record ReportFinished(
    [property: Key(0)] string WorkerId,
    [property: Key(1)] int Rank,
    [property: Key(2)] long Step,
    [property: Key(3)] double FinalLoss,
    [property: Key(4)] double SamplesPerSecond,
    [property: Key(5)] string ReplicaChecksum,
    [property: Key(6)] IReadOnlyDictionary<string, double> Eval,
    [property: Key(7)] double Mfu = 0,
    [property: Key(8)] double FirstLoss = double.NaN,   // loss of the first step this session ran
    [property: Key(9)] string SampleDigest = "") : IPretrainMessage; // chained xxHash64 of the committed steps' sample ids

/// <summary>A rank failed for a reason other than a lost peer (bad data, NaN loss, I/O error).</summary>
[MessagePackObject]
public sealed record ReportFailed(
    [property: Key(0)] string WorkerId,
    [property: Key(1)] int Rank,
    [property: Key(2)] string Reason) : IPretrainMessage;

/// <summary>
/// Coordinator → worker: stop now (the job failed elsewhere or the user cancelled). With
/// <paramref name="Rejoin"/> the worker was counted as lost while it lived (frozen, cut off, wrongly
/// blamed): it drops its generation and registers again as a newcomer instead of exiting. With
/// <paramref name="JobCompleted"/> the job completed without this worker (a newcomer still waiting for a
/// generation, or a replacement pod that registered late): nothing is left for it to do, so it exits 0, and a
/// Kubernetes Job counts its index complete instead of replacing the pod again. With <paramref name="JobFailed"/>
/// the coordinator has failed the job (too few workers for too long, every replica lost): the worker exits 1, as
/// one that failed the job itself does, so a Kubernetes Job fails (FailJob) instead of replacing its pods for ever.
/// </summary>
[MessagePackObject]
public sealed record StopWorker(
    [property: Key(0)] string Reason,
    [property: Key(1)] bool Rejoin = false,
    [property: Key(2)] bool JobCompleted = false,
    [property: Key(3)] bool JobFailed = false) : IPretrainMessage;

/// <summary>
/// Coordinator → worker: a final report (<see cref="ReportFinished"/>, <see cref="ReportPeerLost"/>,
/// <see cref="ReportFailed"/>) is in the journal, so the worker may exit without losing it.
/// </summary>
[MessagePackObject]
public sealed record ReportAcknowledged(
    [property: Key(0)] string WorkerId,
    [property: Key(1)] string Report) : IPretrainMessage;
