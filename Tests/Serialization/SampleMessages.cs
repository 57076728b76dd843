using Pretrain.Shared.Messages;

namespace Pretrain.Tests.Serialization;

/// <summary>One filled-in instance of every registered message and event type.</summary>
public static class SampleMessages
{
    public static readonly JobSpec Job = new("method: simclr\nsteps: 10\n", "abc123", 2, 10, "/tmp/run", false, "/r/recipe.yaml", 2, 4, 60, 15);

    public static readonly ReportFinished Finished =
        new("w1", 1, 10, 0.25, 512.5, "xxh64:0123", new Dictionary<string, double> { ["knn_top1"] = 0.71 });

    public static readonly GenerationStarted Generation =
        new(3, [new RankAssignment(0, "w0", "10.0.0.1", 29500), new RankAssignment(1, "w1", "10.0.0.2", 29501)], 412, 1, "lost", "18c2f3a9b10");

    public static readonly PreparationSpec Preparation =
        new("text", ["/data/kjv.txt"], "/data/kjv-shards", "cl100k_base", true, "text", 0.01, 64L << 20, 7);

    public static IReadOnlyList<IPretrainMessage> All() =>
    [
        new RegisterWorker("w0", "10.0.0.1", 29500, 9100, 4242, "3f2a9c", 3, 411, Enumerable.Repeat((byte)7, 32).ToArray(), Enumerable.Repeat((byte)9, 32).ToArray()),
        new RequestJoinChallenge("w0", Enumerable.Repeat((byte)1, 32).ToArray()),
        new JoinChallenge("w0", Enumerable.Repeat((byte)2, 32).ToArray(), Enumerable.Repeat((byte)3, 32).ToArray()),
        new RegistrationRefused("w0", "worker id w0 is held by a live process", true),
        new WorkerRegistered("w0", Job),
        Generation,
        new ReportProgress("w0", 3, 0, 7, 1.5, 1024),
        new ReportCheckpoint("w0", 8, "checkpoints/step-00000008", "sha:1"),
        new ReportPeerLost("w0", 3, 1, "w1", "connection reset", 411, Suspected: true),
        new ReportStepBoundary("w2", 3, 412, true, "SIGTERM", 1),
        new RequestStepBoundary(3, "w3 is waiting to join"),
        new AbandonGeneration(3, "w1 lost at step 412"),
        Finished,
        new ReportFailed("w1", 1, "NaN loss"),
        new StopWorker("job failed"),
        new ReportAcknowledged("w1", "finished"),
        new FetchJobStatus(),
        new JobStatus("Running", 3, ["w0", "w1"], 7, 0, null),
        new DefineJob(Job),
        new JobDefinitionAnswered(false, "different job"),
        new JobDefined(Job),
        new WorkerJoined("w0", "10.0.0.1", 29500, 9100, 4242, "3f2a9c"),
        new WorkerLost("w1", 3, "unreachable", "coordinator"),
        new StepCommitted(3, 7, 1.5, 1024, 1_764_000_000_000),
        new RegroupStarted(3, "lost", "w1 lost at step 412 (connection reset)", 1_764_000_000_000),
        new StepHeld("w0", 3, 412),
        new WorkerLeft("w2", 3, 412),
        new WorkerSuspected("w1", 3, "no data for 5.1 s", "w2", 1_764_000_000_000),
        new CoordinatorRestarted(3, 412, 1_764_000_000_000),
        Pretrain.Coordinator.State.JobSnapshots.ToSnapshot(Pretrain.Coordinator.State.JobState.Empty.ApplyAll(
            [new JobDefined(Job), new WorkerJoined("w0", "10.0.0.1", 29500, 9100, 4242, "3f2a9c"), Generation, new WorkerFinished(Finished)])),
        new CheckpointRecorded("w0", 8, "checkpoints/step-00000008", "sha:1"),
        new WorkerFinished(Finished),
        new JobCompleted(3, 10),
        new JobFailed(3, "worker w1 lost"),
        new RegisterPreparer("w0", 4242, Enumerable.Repeat((byte)5, 32).ToArray(), Enumerable.Repeat((byte)6, 32).ToArray()),
        new PreparerRegistered("w0", Preparation),
        new ReportTaskCompleted("train-00001", "w0", 1, 1 << 20),
        new ReportTaskFailed("train-00002", "w0", "corpus.jsonl line 3: not JSON"),
        new PreparationDefined(Preparation, ["train-00000", "train-00001"]),
        new PreparationTaskAssigned("train-00001", "w0", 2),
        new PreparationTaskCompleted("train-00001", "w0", 2, 1 << 20),
        new PreparationTaskInvalidated("train-00001", "checksum mismatch"),
        new PreparerLost("w0", "unreachable"),
        new PreparationFinished(2, 2 << 20),
    ];
}
