using System.Diagnostics;
using Pretrain.Shared.Messages;
using Pretrain.Tests.Coordinator;
using Akka.Actor;
using Pretrain.Tests.Infrastructure;
using Xunit;
using Xunit.Abstractions;

namespace Pretrain.Tests.Elastic;

/// <summary>
/// The coordinator may die too (brief, principle 2): workers train on while it is away, and a
/// coordinator restarted on the same journal takes the job up from what they tell it when they
/// register again. Coordinator and workers are separate processes, as on separate machines.
/// </summary>
public sealed class CoordinatorRestartTests(PostgresServer postgres, ITestOutputHelper output) : IClassFixture<PostgresServer>, IDisposable
{
    static readonly TimeSpan Bound = TimeSpan.FromMinutes(3);
    const long Steps = 300;
    readonly string _root = Directory.CreateTempSubdirectory("pretrain-restart-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(_root, recursive: true); } catch (IOException) { }
    }

    [Fact]
    public Task A_coordinator_SIGKILLed_mid_job_and_restarted_finishes_it_with_the_uninterrupted_digest_sqlite() =>
        KillAndRestartCoordinator([]);

    [PostgresFact]
    public async Task A_coordinator_SIGKILLed_mid_job_and_restarted_finishes_it_with_the_uninterrupted_digest_postgres()
    {
        // A job id of its own: the shared server's journal holds other tests' jobs.
        await KillAndRestartCoordinator(["--journal", postgres.ConnectionString, "--job-id", "restart-" + Guid.NewGuid().ToString("N")]);
        Assert.False(File.Exists(Path.Combine(_root, "run", "journal.db")), "the SQLite default was used beside --journal");
    }

    async Task KillAndRestartCoordinator(string[] journal)
    {
        // 300 steps: a quiet run did 60 in 5.8 s, so a 60-step job could end before the kill that must come while it trains.
        string recipe = ChaosRun.TinyRecipe(_root, Steps);
        using var run = SeparateRun.Start(Path.Combine(_root, "run"), recipe, 2, ["--timeout", "5", .. journal]);
        await run.WaitForCheckpointAsync(10);
        run.Coordinator.Kill();
        var down = Stopwatch.StartNew();
        // While it is away the workers train on: rank 0 keeps writing checkpoints nobody asked it for.
        await run.WaitForCheckpointAsync(20, TimeSpan.FromSeconds(60));
        Assert.False(run.Worker("w0").HasExited, run.Output);
        Assert.False(run.Worker("w1").HasExited, run.Output);
        // The restart comes once both workers know the coordinator is gone: their cluster nodes downed (~5 s after the
        // kill), they train on and join again with new nodes.
        foreach (var id in new[] { "w0", "w1" })
            await run.Worker(id).WaitForOutputAsync(o => o.Contains("cluster node was removed", StringComparison.Ordinal), TimeSpan.FromMinutes(1));

        var restarted = run.StartCoordinator();
        int code = await restarted.WaitAsync(Bound);
        output.WriteLine($"coordinator down {down.Elapsed.TotalSeconds:0.0} s before its restart finished the job");
        Assert.True(code == 0, run.Output);
        Assert.Equal(0, await run.Worker("w0").WaitAsync(Bound));
        Assert.Equal(0, await run.Worker("w1").WaitAsync(Bound));

        var s = run.Summary;
        Assert.Equal("completed", s.Status);
        Assert.Equal(Steps, s.Steps);
        Assert.Equal(ChaosRun.TinyDigest(Steps), s.SampleDigest);
        Assert.Single(s.ReplicaChecksums.Values.Distinct());
        Assert.Equal(["start"], s.Generations.Select(g => g.Cause));   // the generation was intact: it went on
        // Both told the new coordinator a step past the one it died at.
        Assert.True(run.HeldAtReregistration("w0") >= 20, run.Output);
        Assert.True(run.HeldAtReregistration("w1") >= 20, run.Output);
        Assert.Contains("took the job up from the journal", restarted.Output);
    }

    [Fact]
    public async Task A_worker_killed_while_the_coordinator_is_down_leaves_a_job_that_completes_when_it_returns()
    {
        string recipe = ChaosRun.TinyRecipe(_root, 200);
        using var run = SeparateRun.Start(Path.Combine(_root, "run"), recipe, 3);
        await run.WaitForCheckpointAsync(10);
        run.Coordinator.Kill();
        run.Worker("w2").Kill();
        // The survivors' ring breaks; each says it holds its step for the next generation, and waits.
        foreach (var id in new[] { "w0", "w1" })
            await run.Worker(id).WaitForOutputAsync(o => o.Contains("for the next generation", StringComparison.Ordinal), TimeSpan.FromMinutes(1));

        var restarted = run.StartCoordinator();
        Assert.True(await restarted.WaitAsync(Bound) == 0, run.Output);
        var s = run.Summary;
        Assert.Equal("completed", s.Status);
        Assert.Equal(200, s.Steps);
        Assert.Equal(ChaosRun.TinyDigest(200), s.SampleDigest);
        Assert.Equal(2, s.WorldSize);
        Assert.Equal(["start", "lost"], s.Generations.Select(g => g.Cause));
        Assert.Single(s.ReplicaChecksums.Values.Distinct());
        var lost = SqliteJournal.Read(Path.Combine(run.Directory, "journal.db")).OfType<WorkerLost>().ToList();
        Assert.Equal("w2", Assert.Single(lost).WorkerId);
        Assert.Single(SqliteJournal.Read(Path.Combine(run.Directory, "journal.db")).OfType<CoordinatorRestarted>());
    }

    [Fact]
    public async Task Resuming_a_job_the_journal_says_failed_is_refused_saying_to_use_a_new_job_id()
    {
        string dir = Path.Combine(_root, "failed");
        Directory.CreateDirectory(dir);
        // The journal of a coordinator whose job failed: defined, one worker, its failure.
        var secret = Pretrain.Shared.Security.JobSecret.Random();
        await using (var host = await Pretrain.Coordinator.CoordinatorHost.StartAsync(new Pretrain.Coordinator.CoordinatorOptions { RunDirectory = dir, JobId = "job", Secret = secret }))
        {
            await host.SubmitAsync(JobStateTests.Spec(1));
            var worker = Akka.Actor.Inbox.Create(host.System);
            await SignedRegistration.SendAsync(host.Job, worker, JobStateTests.Register("w0"), secret, TimeSpan.FromSeconds(10));
            Assert.IsType<WorkerRegistered>(await worker.ReceiveAsync(TimeSpan.FromSeconds(10)));
            host.Job.Tell(new ReportFailed("w0", 0, "bad data in shard 3"), worker.Receiver);
            Assert.False((await host.Outcome.WaitAsync(TimeSpan.FromSeconds(10))).Succeeded);
        }
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();

        var (code, text) = await CliProcess.RunAsync(TimeSpan.FromMinutes(1), "coordinator", "--recipe", ChaosRun.TinyRecipe(_root, 60), "--run-dir", dir,
            "--port", FreePorts.Next().ToString(), "--metrics-port", "-1", "--resume");
        Assert.True(code == 2, text);
        Assert.Contains("failed (w0 (rank 0) failed: bad data in shard 3)", text);
        Assert.Contains("new --job-id", text);
    }

    [Fact]
    public async Task A_coordinator_without_workers_exits_within_its_idle_timeout_and_says_why()
    {
        string recipe = ChaosRun.TinyRecipe(_root, 60);
        string dir = Path.Combine(_root, "idle");
        var clock = Stopwatch.StartNew();
        var (code, text) = await CliProcess.RunAsync(TimeSpan.FromMinutes(1), "coordinator", "--recipe", recipe, "--run-dir", dir,
            "--port", FreePorts.Next().ToString(), "--metrics-port", "-1", "--idle-timeout", "3");
        Assert.True(code == 3, text);
        Assert.InRange(clock.Elapsed, TimeSpan.FromSeconds(3), TimeSpan.FromSeconds(30));
        Assert.Contains("no worker was connected for 3 s", text);
        Assert.Contains("same arguments to continue", text);
        var s = Pretrain.Coordinator.Summary.RunSummary.Read(Path.Combine(dir, "summary.json"));
        Assert.Equal("interrupted", s.Status);
        Assert.Contains("--idle-timeout", s.Error);
    }

    [Fact]
    public async Task A_worker_that_never_reaches_a_coordinator_exits_5_within_its_coordinator_timeout()
    {
        var clock = Stopwatch.StartNew();
        var (code, text) = await CliProcess.RunAsync(TimeSpan.FromMinutes(1), "worker", "--coordinator", $"127.0.0.1:{FreePorts.Next()}",
            "--metrics-port", "-1", "--coordinator-timeout", "3");
        Assert.True(code == 5, text);
        Assert.InRange(clock.Elapsed, TimeSpan.FromSeconds(3), TimeSpan.FromSeconds(30));
        Assert.Contains("could not reach the coordinator", text);
    }

    [Fact]
    public async Task A_worker_whose_ring_broke_while_the_coordinator_is_gone_exits_5_within_its_coordinator_timeout()
    {
        string recipe = ChaosRun.TinyRecipe(_root, 5000, checkpointEvery: 100);
        using var run = SeparateRun.Start(Path.Combine(_root, "run"), recipe, 2, workerArgs: ["--timeout", "5", "--coordinator-timeout", "4"]);
        await run.WaitForCheckpointAsync(100);
        run.Coordinator.Kill();
        // Once w0's cluster node is gone (no actor listens while its new node waits for admission), its peer dies.
        await run.Worker("w0").WaitForOutputAsync(o => o.Contains("cluster node was removed", StringComparison.Ordinal), TimeSpan.FromSeconds(30));
        Assert.False(run.Worker("w0").HasExited, run.Output);
        run.Worker("w1").Kill();
        var clock = Stopwatch.StartNew();
        int code = await run.Worker("w0").WaitAsync(TimeSpan.FromMinutes(1));
        Assert.True(code == 5, run.Output);
        // Bounded by --coordinator-timeout from when the ring broke (on a loaded machine it may break on a timeout
        // before w1 is killed: without a coordinator no control plane vouches for a slow peer).
        Assert.InRange(clock.Elapsed, TimeSpan.Zero, TimeSpan.FromSeconds(30));
        Assert.Contains("its ring is broken", run.Worker("w0").Output);
        Assert.Contains("within 4 s", run.Worker("w0").Output);
    }
}
