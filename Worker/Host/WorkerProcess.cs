using System.Diagnostics;
using System.Net;
using Akka.Actor;
using Akka.Configuration;
using Microsoft.Extensions.Logging;
using Pretrain.Shared.Cluster;
using Pretrain.Shared.Messages;
using Pretrain.Shared.Telemetry;
using Pretrain.Worker.Collectives;
using Pretrain.Worker.Training;

namespace Pretrain.Worker.Host;

/// <summary>
/// A worker process from start to exit: metrics endpoint, data-plane listener, the Akka cluster node
/// with its <see cref="WorkerActor"/>, and a bounded shutdown. Returns the process exit code
/// (<see cref="WorkerExitCodes"/>).
/// </summary>
public static class WorkerProcess
{
    public static async Task<int> RunAsync(WorkerOptions options, CancellationToken ct)
    {
        var log = new StderrLogger(options.WorkerId, options.Verbose ? LogLevel.Information : LogLevel.Warning);
        int threads = options.Threads > 0 ? options.Threads : TorchThreads.For(1, Environment.ProcessorCount);
        // Join the cluster first and load libtorch while the join goes on: a restarted worker is admitted
        // sooner (loading the native libraries takes about a second on these machines).
        var config = ConfigurationFactory.ParseString(ClusterHocon.Worker(options.CoordinatorHost, options.CoordinatorPort, options.Host, verbose: options.Verbose));
        var system = ActorSystem.Create(ClusterHocon.SystemName, config);
        var joining = JoinAsync(system, options.Timeout, ct);
        int code = WorkerExitCodes.Failed;
        try
        {
            TorchSharp.torch.set_num_threads(threads);
            using var metrics = MetricsEndpoint.Start(options.Host, options.MetricsPort);
            using var listener = new DataPlaneListener(IPAddress.Parse(options.Host), options.DataPort, log);
            // Always printed: an operator needs the ports to scrape and to debug the ring.
            Console.Error.WriteLine($"[{options.WorkerId}] pid {Environment.ProcessId}, data plane {options.Host}:{listener.Port}, " +
                                    (metrics != null ? $"metrics on {metrics.Url}" : "metrics off") + $", {threads} torch thread(s)");
            if (!await joining)
            {
                log.LogError("could not join the coordinator at {Host}:{Port} within {Seconds} s (is `pretrain coordinator` running there?)",
                    options.CoordinatorHost, options.CoordinatorPort, options.Timeout.TotalSeconds);
                return code = WorkerExitCodes.CoordinatorUnreachable;
            }
            var exit = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
            // Slow is not dead: the cluster's failure detector (heartbeats on their own threads, ~3 s to
            // unreachable) tells a frozen or lost process from one that is busy writing a checkpoint.
            var cluster = Akka.Cluster.Cluster.Get(system);
            using var session = new TrainingSession(options, listener, log, peersAlive: () => cluster.State.Unreachable.IsEmpty);
            var registration = new RegisterWorker(options.WorkerId, options.Host, listener.Port, metrics?.Port ?? -1, Environment.ProcessId,
                Guid.NewGuid().ToString("N"));
            var hooks = new WorkerSessionHooks(session.RunAsync, () => session.HeldStep, session.Control.Leave, session.Control.RequestStop);
            var worker = system.ActorOf(WorkerActor.Props(options, ClusterHocon.JobPath(options.CoordinatorHost, options.CoordinatorPort),
                registration, hooks, exit), "worker");

            // SIGTERM (a pod preempted) or Ctrl+C: finish the step in flight, tell the coordinator, exit 0. The
            // actor bounds that by the timeout; this bounds it once more in case the actor itself is stuck.
            using var cancel = ct.Register(() =>
            {
                log.LogWarning("stop signal: leaving the job after the step in flight");
                worker.Tell(new WorkerActor.LeaveJob("stop signal (SIGTERM or Ctrl+C)"));
                _ = Task.Delay(options.Timeout * 2).ContinueWith(_ => exit.TrySetResult(WorkerExitCodes.Stopped), TaskScheduler.Default);
            });
            // A worker that froze (SIGSTOP, a stuck host) or was cut off is downed by the cluster; when it wakes its
            // generation is gone and its peers train on without it. It must not train on: it exits, and a
            // launcher (pretrain local --max-restarts, a Kubernetes Job) starts a fresh one that joins as a newcomer.
            Akka.Cluster.Cluster.Get(system).RegisterOnMemberRemoved(() =>
            {
                if (exit.Task.IsCompleted) return;
                log.LogError("this worker was removed from the cluster (frozen or cut off longer than the failure detector allows); its generation is gone, exiting");
                exit.TrySetResult(WorkerExitCodes.Excluded);
            });
            using var parentGone = WatchParent(options.ParentProcessId, () =>
            {
                log.LogError("parent process {Pid} exited; stopping", options.ParentProcessId);
                exit.TrySetResult(WorkerExitCodes.Stopped);
            });
            code = await exit.Task;
            return code;
        }
        finally
        {
            // A finished worker leaves the cluster politely (the coordinator sees an exit, not a
            // failure). After a failure the job is over and its final report journaled: stop at once,
            // so survivors of a lost peer are gone within seconds. Both bounded.
            // (Terminate alone would still run the cluster-leave phases, ~4 s of gossip toward the
            // dead peer; the process exit closes every socket anyway.)
            bool finished = code == WorkerExitCodes.Finished;
            var shutdown = finished ? CoordinatedShutdown.Get(system).Run(CoordinatedShutdown.ClrExitReason.Instance) : system.Terminate();
            var bound = finished ? TimeSpan.FromSeconds(10) : TimeSpan.FromSeconds(1);
            if (await Task.WhenAny(shutdown, Task.Delay(bound)) != shutdown && finished)
                log.LogWarning("cluster shutdown took longer than 10 s; exiting anyway");
        }
    }

    internal static async Task<bool> JoinAsync(ActorSystem system, TimeSpan timeout, CancellationToken ct)
    {
        var up = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Akka.Cluster.Cluster.Get(system).RegisterOnMemberUp(() => up.TrySetResult());
        try { await up.Task.WaitAsync(timeout, ct); return true; }
        catch (TimeoutException) { return false; }
    }

    /// <summary>Polls the parent once a second; `pretrain local` passes its pid so no worker outlives it.</summary>
    internal static Timer? WatchParent(int? pid, Action onGone)
    {
        if (pid is not { } parent) return null;
        return new Timer(_ =>
        {
            try
            {
                using var p = Process.GetProcessById(parent);
                if (!p.HasExited) return;
            }
            catch (ArgumentException) { }   // no such process any more
            onGone();
        }, null, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1));
    }
}
