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

/// <summary>A collective failed because a peer is gone; the worker stops after sending this.</summary>
[MessagePackObject]
public sealed record ReportPeerLost(
    [property: Key(0)] string WorkerId,
    [property: Key(1)] long Generation,
    [property: Key(2)] int LostRank,
    [property: Key(3)] string LostWorkerId,
    [property: Key(4)] string Reason) : IPretrainMessage;

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
    [property: Key(8)] double FirstLoss = double.NaN) : IPretrainMessage; // loss of the first step this session ran

/// <summary>A rank failed for a reason other than a lost peer (bad data, NaN loss, I/O error).</summary>
[MessagePackObject]
public sealed record ReportFailed(
    [property: Key(0)] string WorkerId,
    [property: Key(1)] int Rank,
    [property: Key(2)] string Reason) : IPretrainMessage;

/// <summary>Coordinator → worker: stop now (the job failed elsewhere or the user cancelled).</summary>
[MessagePackObject]
public sealed record StopWorker(
    [property: Key(0)] string Reason) : IPretrainMessage;

/// <summary>
/// Coordinator → worker: a final report (<see cref="ReportFinished"/>, <see cref="ReportPeerLost"/>,
/// <see cref="ReportFailed"/>) is in the journal, so the worker may exit without losing it.
/// </summary>
[MessagePackObject]
public sealed record ReportAcknowledged(
    [property: Key(0)] string WorkerId,
    [property: Key(1)] string Report) : IPretrainMessage;
