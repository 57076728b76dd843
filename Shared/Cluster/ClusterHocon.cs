using Pretrain.Shared.Serialization;

namespace Pretrain.Shared.Cluster;

/// <summary>
/// The Akka configuration both roles share, built in one place so coordinator and workers agree on
/// the system name, roles, serializer binding, failure detection and downing. The coordinator is the
/// cluster's only seed and its oldest member; workers join it with role <c>worker</c> and send their
/// reports to <see cref="JobPath"/>.
/// </summary>
public static class ClusterHocon
{
    public const string SystemName = "pretrain";
    public const string CoordinatorRole = "coordinator";
    public const string WorkerRole = "worker";
    public const string JobActorName = "job";
    public const string PreparationActorName = "prepare";

    /// <summary>The coordinator node's address, e.g. <c>akka.tcp://pretrain@10.0.0.5:4053</c> (<c>akka.ssl.tcp</c> over TLS).</summary>
    public static string Address(string host, int port, bool tls = false) => $"{(tls ? ClusterTls.Scheme : "akka.tcp")}://{SystemName}@{host}:{port}";

    /// <summary>Where workers send <c>RegisterWorker</c> and their reports.</summary>
    public static string JobPath(string host, int port, bool tls = false) => $"{Address(host, port, tls)}/user/{JobActorName}";

    /// <summary>Where preparing workers send <c>RegisterPreparer</c> and their task reports (`pretrain prepare`).</summary>
    public static string PreparationPath(string host, int port, bool tls = false) => $"{Address(host, port, tls)}/user/{PreparationActorName}";

    /// <summary>
    /// Config of the coordinator node. It joins itself as seed (see CoordinatorHost), which is why no
    /// seed-nodes are listed: with port 0 the address is only known once the transport is bound.
    /// </summary>
    public static string Coordinator(string hostname, int port, string? publicHostname = null, bool verbose = false) =>
        Common(CoordinatorRole, hostname, port, publicHostname, verbose);

    /// <summary>
    /// Config of a worker node: remote port 0, joins the coordinator at
    /// <paramref name="coordinatorHost"/>:<paramref name="coordinatorPort"/> as its seed with role
    /// <c>worker</c>. A worker that loses the coordinator is downed by its own side of the split (the
    /// coordinator is the oldest node, and keep-oldest keeps its side), but its ActorSystem is not shut
    /// down, and training goes on on the data plane (brief, principle 2); the process builds a new node
    /// that joins the coordinator when it is back (Worker/Host/WorkerProcess.cs says why this design).
    /// </summary>
    public static string Worker(string coordinatorHost, int coordinatorPort, string hostname = "127.0.0.1",
        string? publicHostname = null, bool verbose = false, bool tls = false) =>
        $$"""
        akka.cluster.seed-nodes = ["{{Address(coordinatorHost, coordinatorPort, tls)}}"]
        akka.cluster.run-coordinated-shutdown-when-down = off
        # A new node of a worker whose coordinator is away asks for admission every second, so it is
        # back within about a second of a restarted coordinator (the default is 5 s, then 10 s).
        akka.cluster.seed-node-timeout = 1s
        akka.cluster.retry-unsuccessful-join-after = 2s
        # The worker process decides how it exits (a polite leave when finished, at once after a
        # failure); Akka's own process-exit hook would block the exit on the leave phases.
        akka.coordinated-shutdown.run-by-clr-shutdown-hook = off
        {{Common(WorkerRole, hostname, 0, publicHostname, verbose)}}
        """;

    private static string Common(string role, string hostname, int port, string? publicHostname, bool verbose)
    {
        var level = verbose ? "INFO" : "WARNING";
        return $$"""
            akka {
              loglevel = {{level}}
              stdout-loglevel = {{level}}
              log-dead-letters-during-shutdown = off
              loggers = ["Pretrain.Shared.Cluster.PretrainLogger, Pretrain.Shared"]
              # Workers leaving at the end of a job are not news: lifecycle events (disassociations)
              # would print stack traces on every normal exit.
              remote.log-remote-lifecycle-events = off
              actor.provider = cluster
              remote.dot-netty.tcp {
                hostname = "{{hostname}}"
                public-hostname = "{{publicHostname ?? hostname}}"
                port = {{port}}
              }
              cluster {
                roles = ["{{role}}"]
                # A newcomer (a restarted worker, a replacement pod) is Up once the leader sees convergence;
                # gossip and leader actions every 250 ms instead of 1 s make that ~1 s, not ~3 s, so it is
                # admitted while the job is still running. A handful of nodes: the extra gossip is noise.
                gossip-interval = 250ms
                leader-actions-interval = 250ms
                # A SIGKILLed worker must be noticed in seconds, not the default ~10-20 s: heartbeats
                # every 500 ms, unreachable after ~3 s of silence, downed 2 s later, then Terminated
                # reaches the job actor's death watch. Loopback and pod networks have no long pauses.
                failure-detector {
                  heartbeat-interval = 500ms
                  acceptable-heartbeat-pause = 3s
                  threshold = 8.0
                  expected-response-after = 1s
                }
                downing-provider-class = "Akka.Cluster.SBR.SplitBrainResolverProvider, Akka.Cluster"
                split-brain-resolver {
                  # The side holding the oldest coordinator-role node survives, so the coordinator
                  # downs unreachable workers and never itself, even when it is left alone. When the
                  # coordinator is the one lost, the workers' side downs its own nodes, and that is
                  # harmless: a downed node is only the worker's control-plane endpoint, its training
                  # runs on the data plane and the process builds a new node that joins the next
                  # coordinator (Worker/Host/WorkerProcess.cs). keep-majority or static-quorum would
                  # instead let a majority of workers down a live coordinator in a partition.
                  active-strategy = keep-oldest
                  stable-after = 2s
                  down-all-when-unstable = off
                  keep-oldest {
                    down-if-alone = off
                    role = "{{CoordinatorRole}}"
                  }
                }
              }
            }
            {{PretrainSerializer.Hocon()}}
            """;
    }
}
