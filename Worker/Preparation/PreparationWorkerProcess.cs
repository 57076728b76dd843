using Akka.Actor;
using Akka.Configuration;
using Pretrain.Data.Preparation;
using Pretrain.Shared.Cluster;
using Pretrain.Worker.Host;

namespace Pretrain.Worker.Preparation;

/// <summary>
/// `pretrain worker --prepare`: a worker process that takes corpus-preparation tasks instead of a
/// rank. No data plane and no torch threads: tasks read inputs and write shards. Returns the exit code.
/// </summary>
public static class PreparationWorkerProcess
{
    public static async Task<int> RunAsync(WorkerOptions options, Func<PrepareSpec, IPreparationPlan> plans, CancellationToken ct)
    {
        Console.Error.WriteLine($"[{options.WorkerId}] pid {Environment.ProcessId}, preparing for {options.CoordinatorHost}:{options.CoordinatorPort}");
        var config = ConfigurationFactory.ParseString(ClusterHocon.Worker(options.CoordinatorHost, options.CoordinatorPort, options.Host, verbose: options.Verbose,
            tls: options.Tls is not null));
        var system = ClusterTls.CreateSystem(config, options.Tls);
        try
        {
            if (!await WorkerProcess.JoinAsync(system, options.Timeout, ct))
            {
                Console.Error.WriteLine($"[{options.WorkerId}] could not join the coordinator at {options.CoordinatorHost}:{options.CoordinatorPort} within {options.Timeout.TotalSeconds:0} s");
                return WorkerExitCodes.CoordinatorUnreachable;
            }
            var exit = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
            system.ActorOf(PreparerActor.Props(options, ClusterHocon.PreparationPath(options.CoordinatorHost, options.CoordinatorPort, options.Tls is not null), plans, exit), "preparer");
            using var cancel = ct.Register(() => exit.TrySetResult(WorkerExitCodes.Stopped));
            using var parentGone = WorkerProcess.WatchParent(options.ParentProcessId, () => exit.TrySetResult(WorkerExitCodes.Stopped));
            return await exit.Task;
        }
        finally
        {
            // Every completion is journaled by the coordinator before it says stop: leave at once, bounded.
            await Task.WhenAny(system.Terminate(), Task.Delay(TimeSpan.FromSeconds(2)));
        }
    }
}
