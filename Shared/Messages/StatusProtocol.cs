using MessagePack;

namespace Pretrain.Shared.Messages;

/// <summary>Asks the coordinator what the job is doing; answered with <see cref="JobStatus"/>.</summary>
[MessagePackObject]
public sealed record FetchJobStatus : IPretrainMessage;

/// <summary>A snapshot of the coordinator's view of the job.</summary>
[MessagePackObject]
public sealed record JobStatus(
    [property: Key(0)] string Phase,
    [property: Key(1)] long Generation,
    [property: Key(2)] IReadOnlyList<string> Workers,
    [property: Key(3)] long LastStep,
    [property: Key(4)] long LastCheckpointStep,
    [property: Key(5)] string? FailureReason) : IPretrainMessage;
