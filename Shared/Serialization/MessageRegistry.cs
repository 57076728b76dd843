using System.Collections.Frozen;
using Pretrain.Shared.Messages;

namespace Pretrain.Shared.Serialization;

/// <summary>
/// The closed list of types <see cref="PretrainSerializer"/> reads and writes, each with a short,
/// stable manifest. Manifests are written into the journal and onto the wire, so a code once used
/// must never change meaning; add new codes, never reuse old ones. Only these types can ever be
/// materialised from bytes — nothing is resolved by reflection from a type name.
/// </summary>
public static class MessageRegistry
{
    private static readonly (Type Type, string Manifest)[] Entries =
    [
        // Rendezvous
        (typeof(RegisterWorker), "rw"),
        (typeof(WorkerRegistered), "wr"),
        (typeof(GenerationStarted), "gs"),
        (typeof(RequestJoinChallenge), "rjc"),
        (typeof(JoinChallenge), "jc"),
        (typeof(RegistrationRefused), "rrf"),
        // Training reports
        (typeof(ReportProgress), "rp"),
        (typeof(ReportCheckpoint), "rc"),
        (typeof(ReportPeerLost), "rpl"),
        (typeof(ReportFinished), "rf"),
        (typeof(ReportFailed), "rx"),
        (typeof(StopWorker), "sw"),
        (typeof(ReportAcknowledged), "ra"),
        (typeof(ReportStepBoundary), "rsb"),
        (typeof(RequestStepBoundary), "qsb"),
        (typeof(AbandonGeneration), "ag"),
        // Status and job submission
        (typeof(FetchJobStatus), "fjs"),
        (typeof(JobStatus), "js"),
        (typeof(DefineJob), "dj"),
        (typeof(JobDefinitionAnswered), "dja"),
        // Journal events
        (typeof(JobDefined), "e.jd"),
        (typeof(WorkerJoined), "e.wj"),
        (typeof(WorkerLost), "e.wl"),
        (typeof(StepCommitted), "e.sc"),
        (typeof(CheckpointRecorded), "e.cr"),
        (typeof(WorkerFinished), "e.wf"),
        (typeof(JobCompleted), "e.jc"),
        (typeof(JobFailed), "e.jf"),
        (typeof(RegroupStarted), "e.rs"),
        (typeof(StepHeld), "e.sh"),
        (typeof(WorkerLeft), "e.wlf"),
        (typeof(WorkerSuspected), "e.ws"),
        (typeof(CoordinatorRestarted), "e.cre"),
        // Journal snapshots (not events: the snapshot store keeps them beside the journal)
        (typeof(JobSnapshot), "s.job"),
        // Preparation (`pretrain prepare`)
        (typeof(RegisterPreparer), "rpr"),
        (typeof(PreparerRegistered), "prr"),
        (typeof(ReportTaskCompleted), "rtc"),
        (typeof(ReportTaskFailed), "rtf"),
        (typeof(PreparationDefined), "e.pd"),
        (typeof(PreparationTaskAssigned), "e.pta"),
        (typeof(PreparationTaskCompleted), "e.ptc"),
        (typeof(PreparationTaskInvalidated), "e.pti"),
        (typeof(PreparerLost), "e.pl"),
        (typeof(PreparationFinished), "e.pf"),
    ];

    private static readonly FrozenDictionary<Type, string> ManifestByType =
        Entries.ToFrozenDictionary(e => e.Type, e => e.Manifest);

    private static readonly FrozenDictionary<string, Type> TypeByManifest =
        Entries.ToFrozenDictionary(e => e.Manifest, e => e.Type, StringComparer.Ordinal);

    /// <summary>Every registered type, for tests that must cover them all.</summary>
    public static IReadOnlyCollection<Type> Types => ManifestByType.Keys;

    public static bool TryGetManifest(Type type, out string manifest) =>
        ManifestByType.TryGetValue(type, out manifest!);

    public static bool TryGetType(string manifest, out Type type) =>
        TypeByManifest.TryGetValue(manifest, out type!);
}
