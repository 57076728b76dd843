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
    [property: Key(4)] int ProcessId,
    // A fresh random id per process: the same worker id with another incarnation is a restarted
    // process (its predecessor is gone), the same incarnation again is a retried registration.
    [property: Key(5)] string Incarnation = "",
    // What a re-registering worker holds (a coordinator restarted, or this worker's node rebuilt): the
    // generation it last trained in and the step its replica holds; 0 and -1 for a worker that never trained.
    [property: Key(6)] long Generation = 0,
    [property: Key(7)] long HeldStep = -1,
    // The proof that this worker knows the job secret (Shared/Security/JoinProof.cs): the nonce of the coordinator's
    // JoinChallenge it answers, and the HMAC of every field above with that nonce. A nonce is redeemed once.
    [property: Key(8)] byte[]? Nonce = null,
    [property: Key(9)] byte[]? Proof = null) : IPretrainMessage
{
    /// <summary>What the log shows of a registration: never the proof.</summary>
    public override string ToString() => $"RegisterWorker {{ {WorkerId} on {Host}:{DataPlanePort}, pid {ProcessId}, incarnation {Incarnation} }}";
}

/// <summary>
/// A worker asks for a registration challenge: the coordinator answers with a fresh single-use nonce, and proves
/// with <paramref name="WorkerNonce"/> that it knows the job secret too (a worker does not register with an impostor).
/// </summary>
[MessagePackObject]
public sealed record RequestJoinChallenge(
    [property: Key(0)] string WorkerId,
    [property: Key(1)] byte[] WorkerNonce) : IPretrainMessage;

/// <summary>The coordinator's challenge: the nonce the registration must be bound to, and its own proof.</summary>
[MessagePackObject]
public sealed record JoinChallenge(
    [property: Key(0)] string WorkerId,
    [property: Key(1)] byte[] CoordinatorNonce,
    [property: Key(2)] byte[] CoordinatorProof) : IPretrainMessage;

/// <summary>
/// A registration the coordinator did not take, and why. <paramref name="MayRetry"/>: the worker id is held by a live
/// process that may be on its way out (a replaced pod whose predecessor is not yet detected as gone), so asking again
/// later may succeed; otherwise (no proof, a wrong secret) the worker exits 2.
/// </summary>
[MessagePackObject]
public sealed record RegistrationRefused(
    [property: Key(0)] string WorkerId,
    [property: Key(1)] string Reason,
    [property: Key(2)] bool MayRetry) : IPretrainMessage;

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
    [property: Key(6)] string RecipePath = "recipe.yaml",
    // Elastic bounds (the recipe's `elastic:` section): the job goes on while at least MinWorkers
    // remain, admits newcomers up to MaxWorkers, and waits ElasticWaitSeconds below MinWorkers.
    [property: Key(7)] int MinWorkers = 1,
    [property: Key(8)] int MaxWorkers = 0,                 // 0: the started world size
    [property: Key(9)] double ElasticWaitSeconds = 120,
    // The coordinator's --timeout: how long a regroup waits for a member's report before counting it lost.
    [property: Key(10)] double TimeoutSeconds = 30,
    // The ring runs over mutual TLS (`pretrain coordinator --tls-data-plane`): every worker needs --tls-cert and --tls-ca.
    [property: Key(11)] bool TlsDataPlane = false)
{
    /// <summary>The most workers a generation may have.</summary>
    [IgnoreMember]
    public int MaxWorld => MaxWorkers > 0 ? MaxWorkers : WorldSize;
}

/// <summary>One member of a generation: its rank and where its data plane listens.</summary>
[MessagePackObject]
public sealed record RankAssignment(
    [property: Key(0)] int Rank,
    [property: Key(1)] string WorkerId,
    [property: Key(2)] string Host,
    [property: Key(3)] int DataPlanePort);

/// <summary>
/// Sent to every member when a rendezvous generation starts: ranks are ordered, and rank r sends to
/// rank (r+1) mod n on the ring. Also the journal event that records the generation. Every member
/// adopts the state of <see cref="SourceRank"/>, which holds <see cref="StartStep"/> steps: it is
/// broadcast over the data plane before the first step (survivors of a lost peer may be a step apart,
/// newcomers hold nothing).
/// </summary>
[MessagePackObject]
public sealed record GenerationStarted(
    [property: Key(0)] long Generation,
    [property: Key(1)] IReadOnlyList<RankAssignment> Ranks,
    [property: Key(2)] long StartStep = 0,
    [property: Key(3)] int SourceRank = 0,
    [property: Key(4)] string Cause = "start",
    // What the generation's data-plane key is derived from with the job secret (JobSecret.GenerationKey): the key
    // never travels or lands in the journal, and differs between generations and between jobs sharing a secret.
    [property: Key(5)] string KeySalt = "") : IJobEvent;
