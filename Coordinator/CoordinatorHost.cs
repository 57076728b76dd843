using Akka.Actor;
using Pretrain.Coordinator.Actors;
using Pretrain.Coordinator.State;
using Pretrain.Shared.Cluster;
using Pretrain.Shared.Messages;

namespace Pretrain.Coordinator;

/// <summary>
/// A running coordinator node: the ActorSystem <c>pretrain</c> as the cluster's seed (role
/// <c>coordinator</c>), the persistent job actor at <c>/user/job</c>, and the job's outcome as a task.
/// </summary>
public sealed class CoordinatorHost : IAsyncDisposable
{
    private readonly Observer _observer;
    private readonly TimeSpan _timeout;

    private CoordinatorHost(ActorSystem system, IActorRef job, Observer observer, string publicHost, int port, TimeSpan timeout, bool tls)
    {
        System = system;
        Job = job;
        _observer = observer;
        // The job actor answers once it has recovered the journal, which on a loaded machine (or a long journal) takes longer
        // than the data plane's --timeout: seen in CI, a 5 s ask at start failed a coordinator whose SQLite was still opening.
        _timeout = Max(timeout, LocalAnswer);
        Port = port;
        Address = ClusterHocon.Address(publicHost, port, tls);
        JobPath = ClusterHocon.JobPath(publicHost, port, tls);
    }

    public ActorSystem System { get; }

    /// <summary>The job actor; send it <see cref="DefineJob"/>, <see cref="FetchJobStatus"/>, reports.</summary>
    public IActorRef Job { get; }

    /// <summary>The bound Akka port (the real one when the options said 0).</summary>
    public int Port { get; }

    /// <summary>Cluster address workers join as seed, e.g. <c>akka.tcp://pretrain@127.0.0.1:4053</c>.</summary>
    public string Address { get; }

    /// <summary>Where workers send their messages, e.g. <c>akka.tcp://pretrain@127.0.0.1:4053/user/job</c>.</summary>
    public string JobPath { get; }

    /// <summary>Worker nodes that are cluster members and reachable now: what --idle-timeout counts.</summary>
    public int LiveWorkers
    {
        get
        {
            var state = Akka.Cluster.Cluster.Get(System).State;
            return state.Members.Count(m => m.HasRole(ClusterHocon.WorkerRole) && m.Status == Akka.Cluster.MemberStatus.Up && !state.Unreachable.Contains(m));
        }
    }

    /// <summary>Completes when the job completes or fails (also right after start if the journal says it already did).</summary>
    public Task<JobOutcome> Outcome => _observer.Outcome.Task;

    /// <summary>What an operator should see of the job's membership (losses, regroups, recoveries), one line each, on the actor's thread.</summary>
    public event Action<string>? Notice
    {
        add => _observer.Notice += value;
        remove => _observer.Notice -= value;
    }

    /// <summary>Every rank's progress report, raised on the job actor's thread: handlers must be quick.</summary>
    public event Action<ReportProgress>? Progress
    {
        add => _observer.Progress += value;
        remove => _observer.Progress -= value;
    }

    public static async Task<CoordinatorHost> StartAsync(CoordinatorOptions options, CancellationToken ct = default)
    {
        var (system, port) = await CoordinatorNode.StartAsync(options, ct);
        var observer = new Observer();
        _ = system.WhenTerminated.ContinueWith(_ => observer.Outcome.TrySetException(
            new InvalidOperationException("The coordinator stopped before the job completed or failed.")), TaskScheduler.Default);
        var job = system.ActorOf(JobActor.Props(options.JobId, observer, options.Secret, options.SnapshotEvery), ClusterHocon.JobActorName);
        system.ActorOf(AdmissionActor.Props(options.AdmissionGrace ?? Max(options.Timeout, TimeSpan.FromSeconds(5))), "admission");
        return new CoordinatorHost(system, job, observer, options.PublicHostname ?? options.Hostname, port, options.Timeout, options.Tls is not null);
    }

    private static TimeSpan Max(TimeSpan a, TimeSpan b) => a > b ? a : b;

    /// <summary>The least time an ask of the job actor (in this process) is given.</summary>
    private static readonly TimeSpan LocalAnswer = TimeSpan.FromSeconds(30);

    /// <summary>Defines the job the workers run. Idempotent for the same spec; throws if the journal holds another.</summary>
    public async Task SubmitAsync(JobSpec spec, CancellationToken ct = default)
    {
        var answer = await Job.Ask<JobDefinitionAnswered>(new DefineJob(spec), _timeout, ct);
        if (!answer.Accepted) throw new JobRefusedException(answer.Reason ?? "no reason given");
    }

    public Task<JobStatus> FetchStatusAsync(CancellationToken ct = default) =>
        Job.Ask<JobStatus>(new FetchJobStatus(), _timeout, ct);

    public Task<JobState> FetchStateAsync(CancellationToken ct = default) =>
        Job.Ask<JobState>(FetchJobState.Instance, _timeout, ct);

    /// <summary>Leaves the cluster and stops the ActorSystem through CoordinatedShutdown.</summary>
    public Task StopAsync() =>
        CoordinatedShutdown.Get(System).Run(CoordinatedShutdown.ActorSystemTerminateReason.Instance);

    /// <summary>
    /// Stops the node, bounded (<see cref="CoordinatorNode.StopAsync"/>). A failed job's workers are gone
    /// or going, and everything is journaled already, so its node stops without the polite leave.
    /// </summary>
    public async ValueTask DisposeAsync() =>
        await CoordinatorNode.StopAsync(System, immediately: Outcome.IsCompletedSuccessfully && !Outcome.Result.Succeeded);

    /// <summary>Bridges the actor's callbacks to the host's task and event without blocking the actor.</summary>
    private sealed class Observer : IJobObserver
    {
        public readonly TaskCompletionSource<JobOutcome> Outcome = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public event Action<ReportProgress>? Progress;
        public event Action<string>? Notice;

        public void OnRegroup(RegroupStarted regroup) => Tell($"{regroup.Reason}; regrouping");

        public void OnLeft(WorkerLeft left) => Tell($"{left.WorkerId} left the job at step {left.Step}");

        public void OnGeneration(GenerationStarted g, JobState state)
        {
            if (g.Cause == RegroupCauses.Start) return;
            Tell($"generation {g.Generation}: {g.Ranks.Count} worker(s) ({string.Join(", ", g.Ranks.Select(r => r.WorkerId))}) from step {g.StartStep}, " +
                 $"state of {g.Ranks[g.SourceRank].WorkerId} (rank {g.SourceRank})");
        }

        public void OnRestarted(CoordinatorRestarted r, JobState state, string recovery) =>
            Tell($"took the job up from the journal {recovery} at generation {r.Generation}, step {r.Step} ({state.Phase.ToString().ToLowerInvariant()}); " +
                 $"waiting for its {state.Workers.Count} worker(s) to register again");

        public void OnReconnected(RegisterWorker r) =>
            Tell(r.HeldStep >= 0 ? $"{r.WorkerId} is back (generation {r.Generation}, holding step {r.HeldStep})" : $"{r.WorkerId} is back");

        public void OnRecovered(long generation, long step, double seconds) =>
            Tell($"generation {generation} committed step {step} {seconds:0.0} s after the failure was detected");

        private void Tell(string line)
        {
            try { Notice?.Invoke(line); }
            catch (Exception) { /* a failing display must not fail the job actor */ }
        }

        public void OnProgress(ReportProgress report)
        {
            try
            {
                Progress?.Invoke(report);
            }
            catch (Exception)
            {
                // A failing display must not fail the job actor; the report is still journaled.
            }
        }

        public void OnOutcome(JobOutcome outcome) => Outcome.TrySetResult(outcome);
    }
}

/// <summary>The job actor refused a job definition (the journal holds another job under this id); the message says how they differ.</summary>
public sealed class JobRefusedException(string reason) : InvalidOperationException($"The job was refused: {reason}")
{
    public string Reason { get; } = reason;
}
