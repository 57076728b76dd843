using Akka.Actor;
using Akka.Configuration;
using Microsoft.Data.Sqlite;
using Pretrain.Coordinator;
using Pretrain.Coordinator.State;
using Pretrain.Shared.Cluster;
using Pretrain.Shared.Messages;
using Pretrain.Shared.Security;
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
    private readonly JobSecret _secret = JobSecret.Random();
    private CoordinatorHost _host = null!;

    public async Task InitializeAsync() =>
        _host = await CoordinatorHost.StartAsync(new CoordinatorOptions { RunDirectory = _runDirectory, Secret = _secret, AdmissionGrace = TimeSpan.FromSeconds(3) });

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

        await CoordinatorSeesUpAsync(system);
        var inbox = Inbox.Create(system);
        await RegisterAsync(system, inbox, Registration(workerId), _secret);
        return inbox;
    }

    private RegisterWorker Registration(string workerId, string? incarnation = null) =>
        new(workerId, "127.0.0.1", 29500 + _workers.Count, 0, Environment.ProcessId, incarnation ?? workerId + "-1");

    private Task<RegisterWorker> RegisterAsync(ActorSystem system, Inbox inbox, RegisterWorker registration, JobSecret secret) =>
        SignedRegistration.SendAsync(system.ActorSelection(_host.JobPath), inbox, registration, secret, Timeout, coordinatorSecret: _secret);

    private async Task<(ActorSystem System, Inbox Inbox)> StartNodeAsync()
    {
        var system = ActorSystem.Create(ClusterHocon.SystemName, ConfigurationFactory.ParseString(ClusterHocon.Worker("127.0.0.1", _host.Port)));
        _workers.Add(system);
        var up = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Akka.Cluster.Cluster.Get(system).RegisterOnMemberUp(() => up.TrySetResult());
        await up.Task.WaitAsync(Timeout);
        await CoordinatorSeesUpAsync(system);
        return (system, Inbox.Create(system));
    }

    /// <summary>
    /// The coordinator takes registrations only from members it sees Up (a real worker asks again every second; these
    /// inboxes ask once), and gossip may tell it a moment after the node itself knows.
    /// </summary>
    private async Task CoordinatorSeesUpAsync(ActorSystem node)
    {
        var address = Akka.Cluster.Cluster.Get(node).SelfAddress;
        var deadline = DateTime.UtcNow + Timeout;
        while (!Akka.Cluster.Cluster.Get(_host.System).State.Members.Any(m => m.Address.Equals(address) && m.Status == Akka.Cluster.MemberStatus.Up))
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"the coordinator did not see {address} Up within {Timeout}");
            await Task.Delay(20);
        }
    }

    [Fact]
    public async Task A_registration_without_proof_or_with_a_wrong_secret_or_replayed_is_refused_and_changes_nothing()
    {
        await _host.SubmitAsync(JobStateTests.Spec(2));
        var (system, inbox) = await StartNodeAsync();

        system.ActorSelection(_host.JobPath).Tell(Registration("intruder"), inbox.Receiver);
        var unproven = Assert.IsType<RegistrationRefused>(await inbox.ReceiveAsync(Timeout));
        Assert.Contains("no proof of the job secret", unproven.Reason);
        Assert.False(unproven.MayRetry);

        await RegisterAsync(system, inbox, Registration("intruder"), JobSecret.Random());
        var wrong = Assert.IsType<RegistrationRefused>(await inbox.ReceiveAsync(Timeout));
        Assert.Contains("different secrets", wrong.Reason);

        // A real registration, then the same bytes again: its nonce is spent.
        var signed = await RegisterAsync(system, inbox, Registration("w0"), _secret);
        Assert.IsType<WorkerRegistered>(await inbox.ReceiveAsync(Timeout));
        system.ActorSelection(_host.JobPath).Tell(signed with { Incarnation = signed.Incarnation }, inbox.Receiver);
        Assert.Contains("used already", Assert.IsType<RegistrationRefused>(await inbox.ReceiveAsync(Timeout)).Reason);

        var state = await _host.FetchStateAsync();
        Assert.Equal(["w0"], state.Workers.Select(w => w.WorkerId));
    }

    [Fact]
    public async Task A_second_process_under_a_live_workers_id_is_refused_and_the_holder_keeps_its_place()
    {
        await _host.SubmitAsync(JobStateTests.Spec(2));
        var (first, firstInbox) = await StartNodeAsync();
        await RegisterAsync(first, firstInbox, Registration("w0", "first"), _secret);
        Assert.IsType<WorkerRegistered>(await firstInbox.ReceiveAsync(Timeout));

        var (second, secondInbox) = await StartNodeAsync();
        await RegisterAsync(second, secondInbox, Registration("w0", "second"), _secret);
        var refused = Assert.IsType<RegistrationRefused>(await secondInbox.ReceiveAsync(Timeout));
        Assert.Contains("held by a live process", refused.Reason);
        Assert.True(refused.MayRetry);

        var state = await _host.FetchStateAsync();
        Assert.Equal("first", Assert.Single(state.Workers).Incarnation);
        Assert.Empty(state.Lost);
    }

    [Fact]
    public async Task A_cluster_member_that_never_proves_the_secret_is_downed()
    {
        var (system, _) = await StartNodeAsync();
        var removed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Akka.Cluster.Cluster.Get(system).RegisterOnMemberRemoved(() => removed.TrySetResult());

        double before = Pretrain.Shared.Telemetry.PretrainMetrics.RejectedConnectionsTotal.WithLabels("control", "unproven_member").Value;

        await removed.Task.WaitAsync(Timeout);   // the grace is 3 s

        // The coordinator's read view of the cluster follows its gossip a moment later.
        var address = Akka.Cluster.Cluster.Get(system).SelfAddress;
        var deadline = DateTime.UtcNow + Timeout;
        while (Akka.Cluster.Cluster.Get(_host.System).State.Members.Any(m => m.Address.Equals(address) && m.Status == Akka.Cluster.MemberStatus.Up))
        {
            Assert.True(DateTime.UtcNow < deadline, $"the coordinator still holds {address} as Up");
            await Task.Delay(20);
        }
        Assert.True(Pretrain.Shared.Telemetry.PretrainMetrics.RejectedConnectionsTotal.WithLabels("control", "unproven_member").Value > before);
    }
}
