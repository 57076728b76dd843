using MessagePack;

namespace Pretrain.Shared.Messages;

// Submitting a job: the coordinator host (or a future `pretrain coordinator` client) defines the job
// its workers will run.

/// <summary>Defines the job. Idempotent for the same spec; a different spec is refused.</summary>
[MessagePackObject]
public sealed record DefineJob(
    [property: Key(0)] JobSpec Job) : IPretrainMessage;

/// <summary>Answer to <see cref="DefineJob"/>.</summary>
[MessagePackObject]
public sealed record JobDefinitionAnswered(
    [property: Key(0)] bool Accepted,
    [property: Key(1)] string? Reason) : IPretrainMessage;
