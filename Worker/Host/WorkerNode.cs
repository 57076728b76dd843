using Akka.Actor;
using Akka.Cluster;
using Akka.Configuration;
using Pretrain.Shared.Cluster;

namespace Pretrain.Worker.Host;

/// <summary>
/// One cluster node of a worker process: an ActorSystem that joins the coordinator as its seed, with
/// tasks for "Up" and for "removed" (downed by the split-brain resolver when the coordinator is gone or
/// this worker was cut off, or shut down). A removed node cannot join again (Akka.Cluster forbids it), so
/// the process builds a new one; see <see cref="WorkerProcess"/> for why that is the design.
/// </summary>
sealed class WorkerNode
{
    readonly TaskCompletionSource _up = new(TaskCreationOptions.RunContinuationsAsynchronously);
    readonly TaskCompletionSource _removed = new(TaskCreationOptions.RunContinuationsAsynchronously);

    WorkerNode(ActorSystem system)
    {
        System = system;
        Cluster = Akka.Cluster.Cluster.Get(system);
        Cluster.RegisterOnMemberUp(() => _up.TrySetResult());
        Cluster.RegisterOnMemberRemoved(() => _removed.TrySetResult());
    }

    public static WorkerNode Start(WorkerOptions options) =>
        new(ClusterTls.CreateSystem(ConfigurationFactory.ParseString(
            ClusterHocon.Worker(options.CoordinatorHost, options.CoordinatorPort, options.Host, verbose: options.Verbose, tls: options.Tls is not null)), options.Tls));

    public ActorSystem System { get; }
    public Akka.Cluster.Cluster Cluster { get; }

    /// <summary>This node is a member: the coordinator (a seed) admitted it.</summary>
    public Task Up => _up.Task;

    /// <summary>This node was removed from the cluster, or its cluster shut down.</summary>
    public Task Removed => _removed.Task;

    /// <summary>
    /// The failure detector's word that every member (coordinator and peers) is alive: collectives wait on
    /// slow peers it vouches for. False while this node is not Up (no word at all).
    /// </summary>
    public bool EveryoneReachable =>
        !Removed.IsCompleted && Cluster.SelfMember.Status == MemberStatus.Up && Cluster.State.Unreachable.IsEmpty;

    /// <summary>The coordinator's node is a member this node can reach now.</summary>
    public bool CoordinatorReachable
    {
        get
        {
            if (Removed.IsCompleted) return false;
            var state = Cluster.State;
            return state.Members.Any(m => m.HasRole(ClusterHocon.CoordinatorRole) && m.Status == MemberStatus.Up)
                   && !state.Unreachable.Any(m => m.HasRole(ClusterHocon.CoordinatorRole));
        }
    }

    /// <summary>
    /// Ends the node. <paramref name="politely"/>: leave the cluster (the coordinator sees an exit, not a
    /// failure), bounded by 10 s; otherwise stop at once (a removed node has nobody to tell).
    /// </summary>
    public async Task<bool> StopAsync(bool politely)
    {
        var shutdown = politely ? CoordinatedShutdown.Get(System).Run(CoordinatedShutdown.ClrExitReason.Instance) : System.Terminate();
        var bound = politely ? TimeSpan.FromSeconds(10) : TimeSpan.FromSeconds(5);
        return await Task.WhenAny(shutdown, Task.Delay(bound)) == shutdown;
    }
}
