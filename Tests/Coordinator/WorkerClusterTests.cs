using Akka.Actor;
using Akka.Configuration;
using Microsoft.Data.Sqlite;
using Pretrain.Coordinator;
using Pretrain.Coordinator.State;
using Pretrain.Shared.Cluster;
using Pretrain.Shared.Messages;
using Xunit;

namespace Pretrain.Tests.Coordinator;

/// <summary>
/// Worker ActorSystems join the coordinator's cluster with <see cref="ClusterHocon.Worker"/>, as worker
/// processes do, and talk to <c>/user/job</c> by path over real remoting on loopback.
/// </summary>
public sealed class WorkerClusterTests : IAsyncLifetime
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(15);
    private readonly string _runDirectory = Directory.CreateTempSubdirectory("pretrain-cluster-").FullName;
    private readonly List<ActorSystem> _workers = [];
    private CoordinatorHost _host = null!;

    public async Task InitializeAsync() => _host = await CoordinatorHost.StartAsync(new CoordinatorOptions { RunDirectory = _runDirectory });

    public async Task DisposeAsync()
    {
        await Task.WhenAll(_workers.Select(w => w.Terminate()));
        await _host.DisposeAsync();
        SqliteConnection.ClearAllPools();
        Directory.Delete(_runDirectory, recursive: true);
    }

    [Fact]
    public async Task A_single_worker_registers_by_path_and_starts_generation_one_as_rank_zero()
    {
        await _host.SubmitAsync(JobStateTests.Spec(1));
        var worker = await StartWorkerAsync("w0");

        Assert.Equal(JobStateTests.Spec(1), Assert.IsType<WorkerRegistered>(await worker.ReceiveAsync(Timeout)).Job);
        var generation = Assert.IsType<GenerationStarted>(await worker.ReceiveAsync(Timeout));
        Assert.Equal(1, generation.Generation);
        Assert.Equal(("w0", 0), (Assert.Single(generation.Ranks).WorkerId, generation.Ranks[0].Rank));
    }

    [Fact]
    public async Task A_killed_worker_is_journaled_as_lost_and_the_survivor_regroups_into_the_next_generation()
    {
        await _host.SubmitAsync(JobStateTests.Spec(2));
        var w0 = await StartWorkerAsync("w0");
        var w1 = await StartWorkerAsync("w1", crashOnTerminate: true);
        foreach (var worker in new[] { w0, w1 })
        {
            Assert.IsType<WorkerRegistered>(await worker.ReceiveAsync(Timeout));
            var generation = Assert.IsType<GenerationStarted>(await worker.ReceiveAsync(Timeout));
            Assert.Equal(["w0", "w1"], generation.Ranks.Select(r => r.WorkerId));
        }

        await _workers[1].Terminate(); // no cluster leave: the coordinator must detect it

        // The survivor is told to stop the generation (it may be stuck on the dead peer) and report its step.
        var abandon = Assert.IsType<AbandonGeneration>(await w0.ReceiveAsync(Timeout));
        Assert.Contains("w1", abandon.Reason);
        var state = await _host.FetchStateAsync();
        Assert.Equal(JobPhase.Regrouping, state.Phase);
        Assert.Equal(("w1", "coordinator"), (Assert.Single(state.Lost).WorkerId, state.Lost[0].DetectedBy));

        w0.Send(_host.Job, new ReportStepBoundary("w0", 1, 7, false, "the coordinator abandoned the generation"));
        var answers = new[] { await w0.ReceiveAsync(Timeout), await w0.ReceiveAsync(Timeout) };
        Assert.Single(answers.OfType<ReportAcknowledged>());
        var next = Assert.Single(answers.OfType<GenerationStarted>());
        Assert.Equal((2L, 7L, 0, "lost"), (next.Generation, next.StartStep, next.SourceRank, next.Cause));
        Assert.Equal("w0", Assert.Single(next.Ranks).WorkerId);
        Assert.False(_host.Outcome.IsCompleted);
        Assert.Equal(Akka.Cluster.MemberStatus.Up, Akka.Cluster.Cluster.Get(_host.System).SelfMember.Status);
    }

    /// <summary>Starts a worker node, waits until it is a cluster member, and registers from an inbox.</summary>
    private async Task<Inbox> StartWorkerAsync(string workerId, bool crashOnTerminate = false)
    {
        var config = ConfigurationFactory.ParseString(ClusterHocon.Worker("127.0.0.1", _host.Port));
        if (crashOnTerminate)
            // Terminate() then drops the connection without leaving the cluster, as a SIGKILL does.
            config = ConfigurationFactory.ParseString("akka.coordinated-shutdown.run-by-actor-system-terminate = off").WithFallback(config);
        var system = ActorSystem.Create(ClusterHocon.SystemName, config);
        _workers.Add(system);

        var up = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Akka.Cluster.Cluster.Get(system).RegisterOnMemberUp(() => up.TrySetResult());
        await up.Task.WaitAsync(Timeout);

        var inbox = Inbox.Create(system);
        system.ActorSelection(_host.JobPath).Tell(new RegisterWorker(workerId, "127.0.0.1", 29500 + _workers.Count, 0, Environment.ProcessId), inbox.Receiver);
        return inbox;
    }
}
