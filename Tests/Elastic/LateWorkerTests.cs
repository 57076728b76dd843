using Pretrain.Tests.Infrastructure;
using Xunit;

namespace Pretrain.Tests.Elastic;

/// <summary>
/// A Job's replacement for a worker lost during the last steps may register after the job completed. Told so by the
/// coordinator that lingers, it exits 0 (its index completes); unanswered it would wait out --coordinator-timeout, exit
/// 5 and be replaced again, for ever — what hung the pod-run test once.
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
        await run.Coordinator.WaitForOutputAsync(o => o.Contains("(--linger)", StringComparison.Ordinal), Bound);
        Assert.Equal("completed", run.Summary.Status);

        var late = run.StartWorker("w1");
        Assert.True(await late.WaitAsync(Bound) == 0, run.Output);
        Assert.Contains("the job completed at step 20", late.Output);
        Assert.False(run.Coordinator.HasExited, "the coordinator left before --linger was over:\n" + run.Output);

        // SIGTERM ends the wait early, still a success: the job is over and summary.json says so.
        NetnsCluster.Signal(run.Coordinator, NetnsCluster.SigTerm);
        Assert.True(await run.Coordinator.WaitAsync(TimeSpan.FromSeconds(30)) == 0, run.Output);
        Assert.Equal("completed", run.Summary.Status);
        Assert.Equal(20, run.Summary.Steps);
    }
}
