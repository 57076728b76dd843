using Pretrain.Tests.Infrastructure;
using Xunit;

namespace Pretrain.Tests.Elastic;

/// <summary>
/// A Job's replacement for a worker lost during the last steps may register after the job completed. Told so by the
/// coordinator that lingers, it exits 0 (its index completes); unanswered it would wait out --coordinator-timeout, exit
/// 5 and be replaced again, for ever — what hung the pod-run test once. A job the coordinator failed ends its workers,
/// late ones too, with exit 1, which fails a Kubernetes Job.
/// </summary>
public sealed class LateWorkerTests : IDisposable
{
    static readonly TimeSpan Bound = TimeSpan.FromMinutes(2);
    readonly string _root = Directory.CreateTempSubdirectory("pretrain-late-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(_root, recursive: true); } catch (IOException) { }
    }

    [Fact]
    public async Task A_worker_that_registers_after_the_job_completed_is_told_so_and_exits_0_while_the_coordinator_lingers()
    {
        string recipe = ChaosRun.TinyRecipe(_root, 20);
        using var run = SeparateRun.Start(Path.Combine(_root, "run"), recipe, 1, ["--timeout", "5", "--linger", "120"]);
        Assert.Equal(0, await run.Worker("w0").WaitAsync(Bound));
        await LateWorkerIsAnsweredAsync(run, "completed", "w1", 0, "the job completed at step 20");

        // SIGTERM ends the wait early, still a success: the job is over and summary.json says so.
        NetnsCluster.Signal(run.Coordinator, NetnsCluster.SigTerm);
        Assert.True(await run.Coordinator.WaitAsync(TimeSpan.FromSeconds(30)) == 0, run.Output);
        Assert.Equal("completed", run.Summary.Status);
        Assert.Equal(20, run.Summary.Steps);
    }

    /// <summary>Once the job ended with <paramref name="status"/> and the coordinator lingers, a worker started then exits <paramref name="code"/> saying why.</summary>
    static async Task LateWorkerIsAnsweredAsync(SeparateRun run, string status, string id, int code, string message)
    {
        await run.Coordinator.WaitForOutputAsync(o => o.Contains("(--linger)", StringComparison.Ordinal), Bound);
        Assert.Equal(status, run.Summary.Status);
        var late = run.StartWorker(id);
        Assert.True(await late.WaitAsync(Bound) == code, run.Output);
        Assert.Contains(message, late.Output);
        Assert.False(run.Coordinator.HasExited, "the coordinator left before --linger was over:\n" + run.Output);
    }

    [Fact]
    public async Task When_the_coordinator_fails_the_job_its_worker_and_a_late_one_exit_1_so_a_Job_fails_instead_of_replacing_them()
    {
        // Two workers, and the job needs both: once one is killed the other waits elastic.wait for a newcomer, then the
        // coordinator fails the job. On Kubernetes exit 4 (stopped) is ignored and the pod replaced, for ever; exit 1 fails the Job.
        string recipe = ChaosRun.TinyRecipe(_root, 5000);
        File.AppendAllText(recipe, "elastic:\n  min_workers: 2\n  wait: 2\n");
        using var run = SeparateRun.Start(Path.Combine(_root, "run"), recipe, 2, ["--timeout", "5", "--linger", "120"]);
        await run.WaitForCheckpointAsync(10);
        NetnsCluster.Signal(run.Worker("w1"), NetnsCluster.SigKill);

        Assert.True(await run.Worker("w0").WaitAsync(Bound) == 1, run.Output);
        Assert.Contains("which failed the job: only 1 worker(s) remain, fewer than elastic.min_workers = 2", run.Worker("w0").Output);
        await LateWorkerIsAnsweredAsync(run, "failed", "w2", 1, "the job failed: only 1 worker(s) remain");

        NetnsCluster.Signal(run.Coordinator, NetnsCluster.SigTerm);
        Assert.True(await run.Coordinator.WaitAsync(TimeSpan.FromSeconds(30)) == 1, run.Output);
    }
}
