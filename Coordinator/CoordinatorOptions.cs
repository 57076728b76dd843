using Pretrain.Shared.Security;

namespace Pretrain.Coordinator;

/// <summary>How to start a coordinator node. Every field has a default that suits a local run.</summary>
public sealed record CoordinatorOptions
{
    /// <summary>The run directory; holds <c>journal.db</c> unless <see cref="Journal"/> says otherwise.</summary>
    public string RunDirectory { get; init; } = ".";

    /// <summary>Address the Akka transport binds to.</summary>
    public string Hostname { get; init; } = "127.0.0.1";

    /// <summary>Address workers use to reach us, when it differs from the bound one (a pod's service name).</summary>
    public string? PublicHostname { get; init; }

    /// <summary>Akka port; 0 picks a free one, exposed as <see cref="CoordinatorHost.Port"/>.</summary>
    public int Port { get; init; }

    /// <summary>Null means SQLite <c>journal.db</c> in <see cref="RunDirectory"/>.</summary>
    public JournalOptions? Journal { get; init; }

    /// <summary>Persistence id of the job actor: one journal can hold several jobs under different ids.</summary>
    public string JobId { get; init; } = "job";

    /// <summary>Events between snapshots of the job state; null = <c>PRETRAIN_SNAPSHOT_EVERY</c> or 1000; 0 = never.</summary>
    public int? SnapshotEvery { get; init; }

    /// <summary>
    /// The job secret every worker must prove at registration (and from which each generation's data-plane key is
    /// derived). The default is a random one nobody else knows: only workers given the same secret can join, so a
    /// caller starting real workers passes the one it hands them (`--secret-file`).
    /// </summary>
    public JobSecret Secret { get; init; } = JobSecret.Random();

    /// <summary>How long a cluster member may stay without proving the secret before it is downed; null = max(5 s, <see cref="Timeout"/>) (a worker proves the secret milliseconds after its node is Up).</summary>
    public TimeSpan? AdmissionGrace { get; init; }

    /// <summary>Akka.Remote over mutually authenticated TLS with these certificates; null = plain TCP.</summary>
    public Pretrain.Shared.Cluster.ClusterTls? Tls { get; init; }

    /// <summary>Akka logs at INFO instead of WARNING.</summary>
    public bool VerboseLogging { get; init; }

    /// <summary>How long to wait for the node to join itself and for asks to the job actor.</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(15);
}
