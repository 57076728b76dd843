using System.Text.Json;
using Akka.Actor;
using Pretrain.Coordinator;
using Pretrain.Coordinator.State;
using Pretrain.Shared.Messages;
using Xunit;
using static Pretrain.Tests.Coordinator.JobStateTests;

namespace Pretrain.Tests.Coordinator;

/// <summary>
/// One scenario run against each journal backend: a coordinator records a job, is stopped, and a new
/// ActorSystem on the same journal must hold exactly the same job state; after the job completes, a
/// third one reports the outcome straight after recovery.
/// </summary>
public static class JournalRecoveryScenario
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    /// <param name="snapshotEvery">Snapshot interval: small, so that recovery starts from a snapshot and replays the events after it.</param>
    public static async Task RunAsync(JournalOptions journal, string runDirectory, int? snapshotEvery = 0)
    {
        // A fresh persistence id, so a shared server (PRETRAIN_TEST_POSTGRES) never replays older runs.
        var secret = Pretrain.Shared.Security.JobSecret.Random();
        var options = new CoordinatorOptions { RunDirectory = runDirectory, Journal = journal, JobId = $"job-{Guid.NewGuid():N}", SnapshotEvery = snapshotEvery, Secret = secret };

        JobState before;
        await using (var host = await CoordinatorHost.StartAsync(options))
        {
            await host.SubmitAsync(Spec(2));
            var w0 = Inbox.Create(host.System);
            var w1 = Inbox.Create(host.System);
            await SignedRegistration.SendAsync(host.Job, w0, Register("w0", 29500), secret, Timeout);
            await SignedRegistration.SendAsync(host.Job, w1, Register("w1", 29501), secret, Timeout);
            Assert.IsType<WorkerRegistered>(await w0.ReceiveAsync(Timeout));
            Assert.IsType<GenerationStarted>(await w0.ReceiveAsync(Timeout));

            for (var step = 1; step <= 5; step++) host.Job.Tell(new ReportProgress("w0", 1, 0, step, 1.0 / step, 100 * step));
            host.Job.Tell(new ReportCheckpoint("w0", 4, "checkpoints/step-00000004", "sum-4"));
            host.Job.Tell(Finished("w1", 1));

            // Commands are stashed while events persist, so this answer comes after all of the above.
            before = await host.FetchStateAsync();
        }
        Assert.Equal((JobPhase.Running, 1L, 5L, 4L), (before.Phase, before.Generation, before.LastStep, before.LastCheckpointStep));
        Assert.Equal(["w0", "w1"], before.Ranks.Select(r => r.WorkerId));
        Assert.Equal([1], before.Finished.Keys);

        await using (var host = await CoordinatorHost.StartAsync(options))
        {
            // The recovered job journals its restart as soon as recovery completes (the answer may come before or after it).
            var recovered = await host.FetchStateAsync();
            Assert.Equal(Json(before), Json(recovered with { CoordinatorRestarts = 0 }));
            Assert.False(host.Outcome.IsCompleted);

            host.Job.Tell(Finished("w0", 0));
            var outcome = await host.Outcome.WaitAsync(Timeout);
            Assert.True(outcome.Succeeded);
        }

        await using (var host = await CoordinatorHost.StartAsync(options))
        {
            var outcome = await host.Outcome.WaitAsync(Timeout);
            Assert.True(outcome.Succeeded);
            Assert.Equal(["w0", "w1"], outcome.Ranks.Select(r => r.WorkerId));
            Assert.Equal("sum-4", Assert.Single(outcome.Checkpoints).ManifestChecksum);
        }
    }

    private static ReportFinished Finished(string workerId, int rank) =>
        new(workerId, rank, 5, 0.2, 500, $"checksum-{rank}", new Dictionary<string, double> { ["knn_top1"] = 0.5 });

    // Immutable collections compare by reference; their JSON renderings compare by content.
    private static string Json(JobState state) => JsonSerializer.Serialize(state, Literals);

    // A rank that ran no step reports first_loss NaN: compare it like any other value.
    private static readonly JsonSerializerOptions Literals = new() { NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals };
}
