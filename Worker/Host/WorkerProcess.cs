using System.Diagnostics;
using System.Net;
using Akka.Actor;
using Akka.Configuration;
using Microsoft.Extensions.Logging;
using Pretrain.Shared.Cluster;
using Pretrain.Shared.Messages;
using Pretrain.Shared.Telemetry;
using Pretrain.Worker.Collectives;
using Pretrain.Worker.Telemetry;
using Pretrain.Worker.Training;

namespace Pretrain.Worker.Host;

/// <summary>
/// A worker process from start to exit: metrics endpoint, data-plane listener, the training session,
/// and a succession of cluster nodes (<see cref="WorkerNode"/>) each with its <see cref="WorkerActor"/>,
/// then a bounded shutdown. Returns the process exit code (<see cref="WorkerExitCodes"/>).
/// </summary>
/// <remarks>
/// Why a new ActorSystem per node rather than Akka.Cluster.Tools' ClusterClient: a worker must stay a
/// cluster member while the coordinator lives, because the cluster's failure detector is what tells a
/// frozen or cut-off peer from one busy writing a checkpoint (the ring's <c>PeersAlive</c>) and what the
/// coordinator's death watch sees when a worker is lost. A ClusterClient would take the worker out of the
/// cluster and out of both. The price is that a node the split-brain resolver downed when the
/// coordinator left cannot join again (Akka.Cluster forbids a removed node to rejoin): the process builds
/// a new one, which joins when a coordinator is back. Nothing the worker knows lives in the node (see
/// <see cref="WorkerMemory"/>), and training runs on the data plane the whole time.
/// </remarks>
public static class WorkerProcess
{
    static readonly TimeSpan JoinLogInterval = TimeSpan.FromSeconds(10);

    public static async Task<int> RunAsync(WorkerOptions options, CancellationToken ct)
    {
        var log = new StderrLogger(options.WorkerId, options.Verbose ? LogLevel.Information : LogLevel.Warning);
        int threads = options.Threads > 0 ? options.Threads : TorchThreads.For(1, Environment.ProcessorCount);
        // --trace opens before anything starts: a file that cannot be made fails the worker before it joins a job.
        var trace = options.TracePath is { } tracePath
            ? TraceRecorder.Open(tracePath, options.WorkerId, m => log.LogWarning("{Message}", m))
            : null;
        // Join the cluster first and load libtorch while the join goes on: a restarted worker is admitted
        // sooner (loading the native libraries takes about a second on these machines).
        WorkerNode? node = WorkerNode.Start(options);
        var exit = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
        WorkerMemory? memory = null;
        int code = WorkerExitCodes.Failed;
        bool signalled = false;
        try
        {
            TorchSharp.torch.set_num_threads(threads);
            // /readyz: joined and training, or joined and waiting for a generation; not while (re)joining a coordinator.
            using var metrics = MetricsEndpoint.Start(options.MetricsHost ?? options.Host, options.MetricsPort, () => memory switch
            {
                { Training: true } => (true, "training"),
                { Attached: true } => (true, "joined; waiting for a generation"),
                _ => (false, $"joining the coordinator at {options.CoordinatorHost}:{options.CoordinatorPort}"),
            });
            using var listener = new DataPlaneListener(IPAddress.Parse(options.Host), options.DataPort, log, options.DataPlaneTls);
            if (options.Secret is null)
                log.LogWarning("no job secret (--secret-file or PRETRAIN_SECRET_FILE): the coordinator will refuse this worker's registration");
            // Always printed: an operator needs the ports to scrape and to debug the ring.
            Console.Error.WriteLine($"[{options.WorkerId}] pid {Environment.ProcessId}, data plane {options.Host}:{listener.Port}, " +
                                    (metrics != null ? $"metrics on {metrics.Url}" : "metrics off") + $", {threads} torch thread(s)");
            // Slow is not dead: the cluster's failure detector (heartbeats on their own threads, ~3 s to
            // unreachable) tells a frozen or lost process from one that is busy writing a checkpoint.
            using var session = new TrainingSession(options, listener, log, peersAlive: () => Volatile.Read(ref node)?.EveryoneReachable == true, trace: trace);
            memory = new WorkerMemory(new RegisterWorker(options.WorkerId, options.Host, listener.Port, metrics?.Port ?? -1, Environment.ProcessId,
                Guid.NewGuid().ToString("N")));
            var hooks = new WorkerSessionHooks(session.RunAsync, () => session.HeldStep, session.Control.Leave, session.Control.RequestStop);

            // SIGTERM (a pod preempted) or Ctrl+C: finish the step in flight, tell the coordinator, exit 0. The
            // actor bounds that by the timeout; this bounds it once more in case the actor itself is stuck.
            using var cancel = ct.Register(() =>
            {
                signalled = true;
                log.LogWarning("stop signal: leaving the job after the step in flight");
                if (!memory.Attached)
                {
                    // Between nodes: nobody to tell. Stop the ring after the step in flight, or go now if nothing trains.
                    if (!memory.Training) { exit.TrySetResult(WorkerExitCodes.Finished); return; }
                    session.Control.Leave("stop signal (SIGTERM or Ctrl+C)");
                }
                memory.Post(new WorkerActor.LeaveJob("stop signal (SIGTERM or Ctrl+C)"));
                _ = Task.Delay(options.Timeout * 2).ContinueWith(_ => exit.TrySetResult(WorkerExitCodes.Stopped), TaskScheduler.Default);
            });
            using var parentGone = WatchParent(options.ParentProcessId, () =>
            {
                log.LogError("parent process {Pid} exited; stopping", options.ParentProcessId);
                exit.TrySetResult(WorkerExitCodes.Stopped);
            });
            using var watchdog = WatchCoordinator(options, memory, log, exit);

            while (!exit.Task.IsCompleted)
            {
                if (node is null) Volatile.Write(ref node, WorkerNode.Start(options));
                var current = node;
                if (await JoinedAsync(current, options, log, exit.Task))
                {
                    current.System.ActorOf(WorkerActor.Props(options, ClusterHocon.JobPath(options.CoordinatorHost, options.CoordinatorPort, options.Tls is not null),
                        memory, hooks, () => current.CoordinatorReachable, exit), "worker");
                    await Task.WhenAny(current.Removed, exit.Task);
                    if (exit.Task.IsCompleted) break;
                    log.LogWarning("this worker's cluster node was removed (the coordinator is gone, or this worker was cut off from it); " +
                                   "{Training}joining {Host}:{Port} again with a new node", memory.Training ? "training goes on; " : "",
                        options.CoordinatorHost, options.CoordinatorPort);
                }
                if (exit.Task.IsCompleted) break;
                Volatile.Write(ref node, null);
                if (!await current.StopAsync(politely: false)) log.LogWarning("the removed cluster node did not stop within 5 s; building a new one anyway");
                await Task.WhenAny(Task.Delay(TimeSpan.FromSeconds(1)), exit.Task);
            }
            code = await exit.Task;
            // Left on a signal (preempted): the code the operator chose, so a Job replaces the pod.
            return signalled && code == WorkerExitCodes.Finished ? options.PreemptedExitCode : code;
        }
        finally
        {
            // The generation's task outlives nodes, not the process.
            memory?.GenerationCancel.Cancel();
            // The timeline is complete before the cluster leave below, which may take 10 s: `pretrain local`
            // kills a worker that has not exited 5 s after the job ended.
            trace?.Dispose();
            // A finished worker leaves the cluster politely (the coordinator sees an exit, not a
            // failure). After a failure the job is over and its final report journaled: stop at once,
            // so survivors of a lost peer are gone within seconds. Both bounded.
            // (Terminate alone would still run the cluster-leave phases, ~4 s of gossip toward the
            // dead peer; the process exit closes every socket anyway.)
            bool finished = code == WorkerExitCodes.Finished;
            if (node is { } last)
            {
                var stopping = last.StopAsync(politely: finished);
                if (!finished) await Task.WhenAny(stopping, Task.Delay(TimeSpan.FromSeconds(1)));   // nobody to tell: exit within a second
                else if (!await stopping) log.LogWarning("cluster shutdown took longer than 10 s; exiting anyway");
            }
        }
    }

    /// <summary>
    /// Waits until <paramref name="node"/> is Up, logging every 10 s while the coordinator does not
    /// admit it. False when the node was removed first or the process is exiting. Not bounded here: the
    /// watchdog (<see cref="WatchCoordinator"/>) bounds the time without a coordinator.
    /// </summary>
    static async Task<bool> JoinedAsync(WorkerNode node, WorkerOptions options, StderrLogger log, Task exiting)
    {
        var waited = TimeSpan.Zero;
        while (true)
        {
            var done = await Task.WhenAny(node.Up, node.Removed, exiting, Task.Delay(JoinLogInterval));
            if (done == node.Up) return !node.Removed.IsCompleted && !exiting.IsCompleted;
            if (done == node.Removed || done == exiting) return false;
            waited += JoinLogInterval;
            log.LogWarning("waiting for the coordinator at {Host}:{Port} to admit this worker ({Seconds:0} s so far)",
                options.CoordinatorHost, options.CoordinatorPort, waited.TotalSeconds);
        }
    }

    /// <summary>
    /// Exits the process with code 5 when no coordinator has answered for --coordinator-timeout while the
    /// worker cannot train either: it never reached one, its ring broke, or it finished and no coordinator
    /// took its final report. A worker that trains is never stopped by this.
    /// </summary>
    static Timer WatchCoordinator(WorkerOptions options, WorkerMemory memory, StderrLogger log, TaskCompletionSource<int> exit)
    {
        DateTime? stuckSince = null;
        return new Timer(_ =>
        {
            if (memory.Training || memory.DisconnectedSince is null) { stuckSince = null; return; }
            stuckSince ??= DateTime.UtcNow;
            if (DateTime.UtcNow - stuckSince < options.CoordinatorTimeout) return;
            string where = $"{options.CoordinatorHost}:{options.CoordinatorPort}", within = $"{options.CoordinatorTimeout.TotalSeconds:0} s";
            // How the newest generation ended: recorded by an actor, or still waiting for one (none was attached).
            var ended = memory.Pending?.Report ?? (memory.Untaken?.Outcome switch
            {
                SessionOutcome.Finished f => f.Report,
                SessionOutcome.PeerLost p => p.Report,
                SessionOutcome.Boundary b => b.Report,
                SessionOutcome.Failed f => f.Report,
                _ => null,
            });
            string why = ended switch
            {
                _ when memory.Job is null => $"could not reach the coordinator at {where} within {within} (is `pretrain coordinator` running there?)",
                ReportFinished f => $"finished the job at step {f.Step}, but no coordinator at {where} took the final report within {within}",
                ReportPeerLost p => $"its ring is broken (lost rank {p.LostRank} in generation {p.Generation}, holding step {p.HeldStep}) " +
                                    $"and no coordinator at {where} answered within {within}",
                _ => $"no generation runs (generation {memory.Generation} ended) and no coordinator at {where} answered within {within}",
            };
            log.LogError("{Why}; exiting with code {Code}", why, WorkerExitCodes.CoordinatorUnreachable);
            exit.TrySetResult(WorkerExitCodes.CoordinatorUnreachable);
        }, null, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1));
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
