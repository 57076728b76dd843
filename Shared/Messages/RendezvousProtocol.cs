using MessagePack;

namespace Pretrain.Shared.Messages;

// Rendezvous: workers register with the coordinator, which starts a generation once the expected
// number have joined and tells every member its rank and the ring of data-plane endpoints.

/// <summary>A worker process asks to join the job. Sent to the coordinator's job actor.</summary>
[MessagePackObject]
public sealed record RegisterWorker(
    [property: Key(0)] string WorkerId,
    [property: Key(1)] string Host,
    [property: Key(2)] int DataPlanePort,
    [property: Key(3)] int MetricsPort,
    [property: Key(4)] int ProcessId) : IPretrainMessage;

/// <summary>The coordinator's answer to <see cref="RegisterWorker"/>: the job every worker runs.</summary>
[MessagePackObject]
public sealed record WorkerRegistered(
    [property: Key(0)] string WorkerId,
    [property: Key(1)] JobSpec Job) : IPretrainMessage;

/// <summary>What a job is: the recipe text (YAML) and the command-line overrides.</summary>
[MessagePackObject]
public sealed record JobSpec(
    [property: Key(0)] string RecipeYaml,
    [property: Key(1)] string RecipeHash,
    [property: Key(2)] int WorldSize,
    [property: Key(3)] long MaxSteps,
    [property: Key(4)] string RunDirectory,
    [property: Key(5)] bool Resume,
    // The recipe file's path where it was submitted: relative data paths in the recipe resolve
    // against its folder (the same filesystem locally, a shared volume on Kubernetes).
    [property: Key(6)] string RecipePath = "recipe.yaml");

/// <summary>One member of a generation: its rank and where its data plane listens.</summary>
[MessagePackObject]
public sealed record RankAssignment(
    [property: Key(0)] int Rank,
    [property: Key(1)] string WorkerId,
    [property: Key(2)] string Host,
    [property: Key(3)] int DataPlanePort);

/// <summary>
/// Sent to every member when a rendezvous generation starts: ranks are ordered, and rank r sends to
/// rank (r+1) mod n on the ring. Also the journal event that records the generation.
/// </summary>
[MessagePackObject]
public sealed record GenerationStarted(
    [property: Key(0)] long Generation,
    [property: Key(1)] IReadOnlyList<RankAssignment> Ranks) : IJobEvent;
