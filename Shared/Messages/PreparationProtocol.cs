using MessagePack;

namespace Pretrain.Shared.Messages;

// `pretrain prepare`: the coordinator's preparation actor hands corpus-preparation tasks to workers
// that registered for them (or runs them itself when none did). Every process builds the same plan
// from the same spec, so a task id means the same work everywhere.

/// <summary>
/// The wire and journal form of Data's PrepareSpec (Shared cannot reference Data): what to prepare.
/// Field meanings are PrepareSpec's; Coordinator/Preparation/PreparationSpecs converts both ways.
/// </summary>
[MessagePackObject]
public sealed record PreparationSpec(
    [property: Key(0)] string Kind,
    [property: Key(1)] IReadOnlyList<string> Inputs,
    [property: Key(2)] string Output,
    [property: Key(3)] string Tokenizer,
    [property: Key(4)] bool CompactVocabulary,
    [property: Key(5)] string? JsonField,
    [property: Key(6)] double ValidationFraction,
    [property: Key(7)] long ShardBytes,
    [property: Key(8)] long Seed)
{
    // Records compare lists by reference; a re-submitted spec must equal the journaled one.
    public bool Equals(PreparationSpec? other) =>
        other is not null && Kind == other.Kind && Inputs.SequenceEqual(other.Inputs) && Output == other.Output &&
        Tokenizer == other.Tokenizer && CompactVocabulary == other.CompactVocabulary && JsonField == other.JsonField &&
        ValidationFraction.Equals(other.ValidationFraction) && ShardBytes == other.ShardBytes && Seed == other.Seed;

    public override int GetHashCode() => HashCode.Combine(Kind, Output, Tokenizer, ShardBytes, Seed);
}

/// <summary>A worker offers to run preparation tasks. Sent to the coordinator's preparation actor.</summary>
[MessagePackObject]
public sealed record RegisterPreparer(
    [property: Key(0)] string WorkerId,
    [property: Key(1)] int ProcessId,
    // The proof of the job secret, as for a training worker's RegisterWorker (Shared/Security/JoinProof.cs).
    [property: Key(2)] byte[]? Nonce = null,
    [property: Key(3)] byte[]? Proof = null) : IPretrainMessage
{
    public override string ToString() => $"RegisterPreparer {{ {WorkerId}, pid {ProcessId} }}";
}

/// <summary>Answer to <see cref="RegisterPreparer"/>: the spec the worker builds its plan from.</summary>
[MessagePackObject]
public sealed record PreparerRegistered(
    [property: Key(0)] string WorkerId,
    [property: Key(1)] PreparationSpec Spec) : IPretrainMessage;

/// <summary>A worker ran its task; the output is written atomically and verifies.</summary>
[MessagePackObject]
public sealed record ReportTaskCompleted(
    [property: Key(0)] string TaskId,
    [property: Key(1)] string WorkerId,
    [property: Key(2)] int Attempt,
    [property: Key(3)] long Bytes) : IPretrainMessage;

/// <summary>A worker could not run its task (bad input, I/O error): the preparation fails with this reason.</summary>
[MessagePackObject]
public sealed record ReportTaskFailed(
    [property: Key(0)] string TaskId,
    [property: Key(1)] string WorkerId,
    [property: Key(2)] string Reason) : IPretrainMessage;

/// <summary>Reasons the preparation actor gives in <see cref="StopWorker"/>, so a preparing worker knows how to exit.</summary>
public static class PreparationStopReasons
{
    public const string Finished = "the preparation is finished";
}
