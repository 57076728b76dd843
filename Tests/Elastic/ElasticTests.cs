using System.Diagnostics;
using System.Text.RegularExpressions;
using Pretrain.Coordinator.Summary;
using Pretrain.Shared.Messages;
using Xunit;
using Xunit.Abstractions;

namespace Pretrain.Tests.Elastic;

/// <summary>The clean runs the elastic tests compare against, made once.</summary>
public sealed class CleanRuns : IDisposable
{
    readonly string _root = Directory.CreateTempSubdirectory("pretrain-clean-").FullName;
    readonly Lazy<Task<RunSummary>> _sixty;

    public CleanRuns() => _sixty = new(() => RunAsync(60, 3));

    /// <summary>The tiny recipe with 60 steps on 3 workers, nothing hurt.</summary>
    public Task<RunSummary> Sixty => _sixty.Value;

    public string Root => _root;

    async Task<RunSummary> RunAsync(long steps, int workers)
    {
        string dir = Path.Combine(_root, $"clean-{steps}");
        using var run = ChaosRun.Start(dir, ChaosRun.TinyRecipe(_root, steps), workers);
        int code = await run.WaitAsync();
        Assert.True(code == 0, $"the clean run exited {code}:\n{run.Output}");
        return run.Summary;
    }

    public void Dispose()
    {
        try { Directory.Delete(_root, recursive: true); } catch (IOException) { }
    }
}

/// <summary>
/// Elastic training end to end (issue 9): real worker processes on loopback, real signals. A lost worker
/// no longer ends the job: the survivors carry on from memory, at the same samples as a run nobody hurt.
/// </summary>
public sealed class ElasticTests(CleanRuns clean, ITestOutputHelper output) : IClassFixture<CleanRuns>
{
    string NewRun(string name) => Path.Combine(clean.Root, name + "-" + Guid.NewGuid().ToString("N")[..6]);

    [Fact]
    public async Task Survivors_of_a_SIGKILLed_worker_finish_on_the_clean_runs_samples_and_loss()
    {
        var baseline = await clean.Sixty;
        Assert.Equal(ChaosRun.TinyDigest(60), baseline.SampleDigest);   // the digest is what the definition says

        using var run = ChaosRun.Start(NewRun("kill"), ChaosRun.TinyRecipe(clean.Root, 60), 3, "--max-restarts", "0");
        await run.WaitForCheckpointAsync(10);
        var killed = Stopwatch.StartNew();
        run.Signal("worker-1", ChaosRun.SigKill);
        Assert.Equal(0, await run.WaitAsync());

        var s = run.Summary;
        output.WriteLine($"recovery {s.MaxRecoverySeconds:0.000} s; final loss {s.FinalLoss} vs clean {baseline.FinalLoss}; run ended {killed.Elapsed.TotalSeconds:0.0} s after the kill");
        Assert.Equal("completed", s.Status);
        Assert.Equal(60, s.Steps);
        Assert.Equal(2, s.WorldSize);
        Assert.Equal(["start", "lost"], s.Generations.Select(g => g.Cause));
        Assert.Equal([3, 2], s.Generations.Select(g => g.WorldSize));
        Assert.InRange(s.Generations[1].FirstStep, 10, 59);
        Assert.Equal(baseline.SampleDigest, s.SampleDigest);
        Assert.InRange(Math.Abs(s.FinalLoss - baseline.FinalLoss) / baseline.FinalLoss, 0, 0.01);
        Assert.Equal(1, s.Recoveries);
        Assert.InRange(s.MaxRecoverySeconds, 0.001, 5.0);
        Assert.Single(s.ReplicaChecksums.Values.Distinct());
        Assert.Contains("worker-1 lost (", run.Output);
        Assert.Contains("generation 2: 2 worker(s)", run.Output);
        Assert.Contains(run.Journaled<WorkerLost>(), l => l.WorkerId == "worker-1");
    }

    [Fact]
    public async Task A_restarted_worker_rejoins_as_a_newcomer_and_all_three_replicas_end_equal()
    {
        // Far longer than the 60-step run, so the restarted process (~3-4 s to start and join) arrives while the job
        // trains: CI ran 200 steps in under 10 s.
        using var run = ChaosRun.Start(NewRun("restart"), ChaosRun.TinyRecipe(clean.Root, 600), 3, "--max-restarts", "3");
        await run.WaitForCheckpointAsync(10);
        run.Signal("worker-1", ChaosRun.SigKill);
        Assert.Equal(0, await run.WaitAsync());

        var s = run.Summary;
        output.WriteLine(string.Join("; ", s.Generations.Select(g => $"g{g.Number} {g.WorldSize} from {g.FirstStep} ({g.Cause})")));
        Assert.Equal(600, s.Steps);
        Assert.Equal(3, s.WorldSize);
        Assert.Equal(3, s.ReplicaChecksums.Count);
        Assert.Single(s.ReplicaChecksums.Values.Distinct());
        Assert.Equal(["start", "lost", "joined"], s.Generations.Select(g => g.Cause));
        Assert.Equal(ChaosRun.TinyDigest(600), s.SampleDigest);
        Assert.Contains("worker-1 started again", run.Output);
    }

    [Fact]
    public async Task A_SIGTERMed_worker_leaves_after_its_step_and_the_others_train_again_within_2_seconds()
    {
        var baseline = await clean.Sixty;
        using var run = ChaosRun.Start(NewRun("term"), ChaosRun.TinyRecipe(clean.Root, 60), 3, "--max-restarts", "0");
        await run.WaitForCheckpointAsync(10);
        using var leaver = Process.GetProcessById(run.Pid("worker-2"));
        run.Signal("worker-2", ChaosRun.SigTerm);
        Assert.True(leaver.WaitForExit(TimeSpan.FromSeconds(10)), "the SIGTERMed worker did not exit within 10 s");
        Assert.Equal(0, await run.WaitAsync());

        var s = run.Summary;
        Assert.DoesNotContain("worker-2 (pid", run.Output);      // `local` reports every non-zero exit
        Assert.Equal(["start", "left"], s.Generations.Select(g => g.Cause));
        Assert.Equal(2, s.WorldSize);
        Assert.InRange(s.MaxRecoverySeconds, 0.001, 2.0);          // no timeout was waited for
        Assert.Equal(baseline.SampleDigest, s.SampleDigest);
        Assert.Contains("worker-2 left the job at step", run.Output);
        Assert.Empty(run.Journaled<WorkerLost>());
    }

    [Fact]
    public async Task Killing_rank_0_moves_checkpoint_duty_and_keeps_the_clean_runs_samples()
    {
        var baseline = await clean.Sixty;
        using var run = ChaosRun.Start(NewRun("rank0"), ChaosRun.TinyRecipe(clean.Root, 60), 3, "--max-restarts", "0", "--verbose");
        await run.WaitForCheckpointAsync(10);
        string rankZero = run.RankZeroOfFirstGeneration(3);
        run.Signal(rankZero, ChaosRun.SigKill);
        Assert.Equal(0, await run.WaitAsync());

        var s = run.Summary;
        Assert.Equal(baseline.SampleDigest, s.SampleDigest);
        Assert.Equal(2, s.WorldSize);
        Assert.EndsWith("step-00000060", s.LastCheckpoint);       // written by the new rank 0
        Assert.Contains(run.Journaled<CheckpointRecorded>(), c => c.Step == 60 && c.WorkerId != rankZero);
    }

    [Fact]
    public async Task Two_of_four_workers_killed_at_once_leave_two_that_finish_on_the_same_samples()
    {
        var baseline = await clean.Sixty;
        using var run = ChaosRun.Start(NewRun("two"), ChaosRun.TinyRecipe(clean.Root, 60), 4, "--max-restarts", "0");
        await run.WaitForCheckpointAsync(10);
        run.Signal("worker-1", ChaosRun.SigKill);
        run.Signal("worker-2", ChaosRun.SigKill);
        Assert.Equal(0, await run.WaitAsync());

        var s = run.Summary;
        Assert.Equal(2, s.WorldSize);
        Assert.Equal(baseline.SampleDigest, s.SampleDigest);      // a digest does not depend on the world size
        Assert.Equal(4, s.Generations[0].WorldSize);
        Assert.Equal(2, s.Generations[^1].WorldSize);
        Assert.Single(s.ReplicaChecksums.Values.Distinct());
    }

    [Fact]
    public async Task When_every_worker_is_lost_the_job_fails_naming_the_last_checkpoint_and_nothing_hangs()
    {
        using var run = ChaosRun.Start(NewRun("all"), ChaosRun.TinyRecipe(clean.Root, 100_000), 2, "--max-restarts", "0", "--timeout", "5");
        await run.WaitForCheckpointAsync(10);
        var clock = Stopwatch.StartNew();
        run.Signal("worker-0", ChaosRun.SigKill);
        run.Signal("worker-1", ChaosRun.SigKill);
        Assert.Equal(1, await run.WaitAsync());
        output.WriteLine($"the run ended {clock.Elapsed.TotalSeconds:0.0} s after the kills");

        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), $"took {clock.Elapsed}");
        var s = run.Summary;
        Assert.Equal("failed", s.Status);
        Assert.Contains("checkpoint", s.Error);
        Assert.Contains("--resume", s.Error);
    }
}

/// <summary>Slow is not dead, frozen is: a SIGSTOPped worker is excluded and the job carries on; woken, it does not corrupt the run.</summary>
public sealed class FrozenWorkerTests(CleanRuns clean, ITestOutputHelper output) : IClassFixture<CleanRuns>
{
    [Fact]
    public async Task A_SIGSTOPped_worker_is_excluded_within_the_timeout_and_woken_it_rejoins_without_corrupting_the_run()
    {
        var baseline = await clean.Sixty;
        using var run = ChaosRun.Start(Path.Combine(clean.Root, "stop"), ChaosRun.TinyRecipe(clean.Root, 60), 3,
            "--max-restarts", "0", "--timeout", "5");
        await run.WaitForCheckpointAsync(10);
        var clock = Stopwatch.StartNew();
        run.Signal("worker-1", ChaosRun.SigStop);
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (!run.Output.Contains("generation 2:", StringComparison.Ordinal) && DateTime.UtcNow < deadline) await Task.Delay(50);
        var excluded = clock.Elapsed;
        var generation2 = Regex.Match(run.Output, @"generation 2: \d+ worker\(s\) \([^)]*\) from step (\d+)");
        Assert.True(generation2.Success, $"no generation 2 within 30 s of the SIGSTOP (--timeout 5):\n{run.Output}");
        // Frozen until the others have trained and checkpointed without it: it wakes into a generation that is gone.
        await run.WaitForCheckpointAsync(long.Parse(generation2.Groups[1].Value) / 10 * 10 + 10);
        run.Signal("worker-1", ChaosRun.SigCont);
        Assert.Equal(0, await run.WaitAsync());
        output.WriteLine($"generation 2 started {excluded.TotalSeconds:0.0} s after SIGSTOP (--timeout 5)");

        Assert.InRange(excluded, TimeSpan.Zero, TimeSpan.FromSeconds(5 + 5));
        var s = run.Summary;
        Assert.Equal(60, s.Steps);
        // Woken, it registers again as a newcomer; whether it is admitted before the job ends depends on timing.
        var causes = s.Generations.Select(g => g.Cause).ToList();
        Assert.Equal(["start", "lost"], causes.Take(2));
        Assert.All(causes.Skip(2), c => Assert.Equal("joined", c));
        Assert.Equal(causes.Count > 2 ? 3 : 2, s.WorldSize);
        Assert.Equal(baseline.SampleDigest, s.SampleDigest);
        Assert.InRange(Math.Abs(s.FinalLoss - baseline.FinalLoss) / baseline.FinalLoss, 0, 0.01);
        Assert.Single(s.ReplicaChecksums.Values.Distinct());
        // Woken, it learnt it had been removed and dropped its generation rather than train on a stale one.
        string log = File.ReadAllText(Path.Combine(run.Directory, "logs", "worker-1.log"));
        Assert.True(log.Contains("cluster node was removed") || log.Contains("counted as lost"), log);
    }
}

/// <summary>Checkpoints that do not stall the ring: rank 0 writes on another thread, and a write slower than --timeout fails nothing.</summary>
public sealed class SlowCheckpointTests(CleanRuns clean, ITestOutputHelper output) : IClassFixture<CleanRuns>
{
    [Fact]
    public async Task A_checkpoint_write_slower_than_the_timeout_does_not_fail_the_job()
    {
        var baseline = await clean.Sixty;
        var slow = new Dictionary<string, string> { [Pretrain.Worker.Training.Checkpoints.CheckpointWriter.DelayVariable] = "8000" };
        var clock = Stopwatch.StartNew();
        using var run = ChaosRun.Start(slow, Path.Combine(clean.Root, "slow-checkpoint"), ChaosRun.TinyRecipe(clean.Root, 60, checkpointEvery: 30), 3,
            "--max-restarts", "0", "--timeout", "3");
        Assert.True(await run.WaitAsync() == 0, run.Output);
        output.WriteLine($"run took {clock.Elapsed.TotalSeconds:0.0} s with 8 s checkpoint writes and --timeout 3");

        var s = run.Summary;
        Assert.Equal("completed", s.Status);
        Assert.Equal(["start"], s.Generations.Select(g => g.Cause));    // nobody was lost: slow is not dead
        Assert.Equal(baseline.SampleDigest, s.SampleDigest);
        Assert.EndsWith("step-00000060", s.LastCheckpoint);
        Assert.True(Directory.Exists(Path.Combine(run.Directory, "checkpoints", "step-00000030")));
        var logs = string.Concat(Enumerable.Range(0, 3).Select(i => File.ReadAllText(Path.Combine(run.Directory, "logs", $"worker-{i}.log"))));
        Assert.DoesNotContain("lost", s.Generations.Select(g => g.Cause));
        Assert.True(clock.Elapsed > TimeSpan.FromSeconds(8), "the slowed writer did not slow anything: the hook is not in effect");
        Assert.DoesNotContain("no data for", logs.Split('\n').Where(l => l.Contains("lost", StringComparison.Ordinal)));
        // The others did wait longer than the timeout on rank 0 (the final write), vouched for by the control plane.
        Assert.Contains("but every peer is alive (control plane)", logs);
    }
}

/// <summary>Failures on top of failures: a worker killed while the job regroups, rank 0 killed in the middle of a checkpoint write.</summary>
public sealed class CompoundFailureTests(CleanRuns clean, ITestOutputHelper output) : IClassFixture<CleanRuns>
{
    [Fact]
    public async Task A_worker_killed_while_the_job_regroups_leaves_the_others_to_finish_on_the_same_samples()
    {
        var baseline = await clean.Sixty;
        using var run = ChaosRun.Start(Path.Combine(clean.Root, "regroup-kill"), ChaosRun.TinyRecipe(clean.Root, 60), 4,
            "--max-restarts", "0", "--timeout", "3");
        await run.WaitForCheckpointAsync(10);
        run.Signal("worker-1", ChaosRun.SigStop);            // the regroup waits for this frozen one (timeout, then suspect grace)
        try
        {
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
            while (!run.Output.Contains("regrouping", StringComparison.Ordinal) && DateTime.UtcNow < deadline) await Task.Delay(20);
            Assert.Contains("regrouping", run.Output);
            run.Signal("worker-2", ChaosRun.SigKill);        // a survivor dies while the regroup is under way
            Assert.True(await run.WaitAsync() == 0, run.Output);
        }
        finally
        {
            try { run.Signal("worker-1", ChaosRun.SigCont); } catch (Exception) { }
        }

        var s = run.Summary;
        output.WriteLine(string.Join("; ", s.Generations.Select(g => $"g{g.Number} {g.WorldSize} from {g.FirstStep} ({g.Cause})")));
        Assert.Equal(60, s.Steps);
        Assert.Equal(2, s.WorldSize);
        Assert.Equal(baseline.SampleDigest, s.SampleDigest);
        Assert.Single(s.ReplicaChecksums.Values.Distinct());
        var lost = run.Journaled<WorkerLost>().Select(l => l.WorkerId).ToHashSet();
        Assert.Superset(new HashSet<string> { "worker-1", "worker-2" }, lost);
    }

    [Fact]
    public async Task Rank_0_killed_while_it_writes_a_checkpoint_loses_nothing_and_leaves_no_partial_checkpoint()
    {
        var baseline = await clean.Sixty;
        var slow = new Dictionary<string, string> { [Pretrain.Worker.Training.Checkpoints.CheckpointWriter.DelayVariable] = "1500" };
        string dir = Path.Combine(clean.Root, "checkpoint-kill");
        using var run = ChaosRun.Start(slow, dir, ChaosRun.TinyRecipe(clean.Root, 60, checkpointEvery: 20), 3, "--max-restarts", "0", "--verbose");
        var checkpoints = Path.Combine(dir, "checkpoints");
        var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(2);
        bool Writing() => Directory.Exists(checkpoints) && Directory.EnumerateDirectories(checkpoints, ".tmp-step-00000020-*").Any();
        while (!Writing() && DateTime.UtcNow < deadline)
            await Task.Delay(10);
        Assert.True(Writing(), $"rank 0's write of step 20 (.tmp-step-00000020-*, slowed to 1.5 s) was never seen in flight:\n{run.Output}");
        string rankZero = run.RankZeroOfFirstGeneration(3);
        run.Signal(rankZero, ChaosRun.SigKill);               // its write of step 20 is in flight
        Assert.True(await run.WaitAsync() == 0, run.Output);

        var s = run.Summary;
        Assert.Equal(baseline.SampleDigest, s.SampleDigest);
        Assert.Equal(2, s.WorldSize);
        Assert.EndsWith("step-00000060", s.LastCheckpoint);
        Assert.Empty(Directory.EnumerateDirectories(checkpoints, ".tmp-*"));   // the killed write's leftovers are gone
        var verified = new Pretrain.Worker.Training.Checkpoints.CheckpointStore(dir, _ => { }).FindNewest(null);
        Assert.Equal(60, verified!.State.Step);
        Assert.Equal(s.SampleDigest, verified.State.SampleDigest);
    }
}
