using Pretrain.Shared.Security;

namespace Pretrain.Worker.Host;

/// <summary>How a worker process is started (`pretrain worker …`).</summary>
public sealed record WorkerOptions
{
    /// <summary>Host and Akka port of the coordinator this worker joins.</summary>
    public required string CoordinatorHost { get; init; }
    public required int CoordinatorPort { get; init; }

    /// <summary>Address this worker binds and advertises for Akka and the data plane.</summary>
    public string Host { get; init; } = "127.0.0.1";

    /// <summary>Data-plane (collectives) port; 0 = any free port.</summary>
    public int DataPort { get; init; }

    /// <summary>Prometheus /metrics port; 0 = any free port, -1 = off.</summary>
    public int MetricsPort { get; init; }

    /// <summary>Address the metrics and health endpoint binds; null = <see cref="Host"/>.</summary>
    public string? MetricsHost { get; init; }

    /// <summary>Torch intra-op threads; 0 = max(1, cores / workers on this machine).</summary>
    public int Threads { get; init; }

    /// <summary>Stable name in logs and the journal; default host-pid.</summary>
    public string WorkerId { get; init; } = $"{Environment.MachineName}-{Environment.ProcessId}";

    /// <summary>Exit when this process is gone (set by `pretrain local` so no worker outlives it).</summary>
    public int? ParentProcessId { get; init; }

    /// <summary>
    /// Exit code of a worker that left the job on a stop signal (SIGTERM, Ctrl+C) after its step: 0 by default;
    /// a Kubernetes Job sets e.g. 143 so that its podFailurePolicy replaces a preempted pod instead of counting
    /// its index as done.
    /// </summary>
    public int PreemptedExitCode { get; init; }

    /// <summary>--transport: auto (ring links to ranks on this host through shared memory, unless the ring is TLS) or tcp (always).</summary>
    public Collectives.TransportPolicy Transport { get; init; } = Collectives.TransportPolicy.Auto;

    /// <summary>Bound on every network wait: registration, rendezvous, collectives.</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// How long a worker that cannot train (no generation runs, or its ring broke) waits for a coordinator
    /// before it exits 5. While it trains it waits as long as training lasts: the coordinator may be restarted meanwhile.
    /// </summary>
    public TimeSpan CoordinatorTimeout { get; init; } = TimeSpan.FromSeconds(300);

    public bool Verbose { get; init; }

    /// <summary>
    /// --trace: the Chrome trace this worker writes of its step phases and collectives (Perfetto, chrome://tracing),
    /// flushed every second and completed at exit; null = no timeline. `pretrain local` gives each worker its own
    /// file in the run's logs folder and merges them.
    /// </summary>
    public string? TracePath { get; init; }

    /// <summary>
    /// The job secret (--secret-file): proved at registration, and the root of every generation's data-plane key.
    /// Null: the worker registers unproven and the coordinator refuses it (exit 2, naming what is missing).
    /// </summary>
    public JobSecret? Secret { get; init; }

    /// <summary>Certificates for Akka.Remote over mutual TLS (--tls-cert, --tls-ca), and for the ring when the job asks for a TLS data plane.</summary>
    public Pretrain.Shared.Cluster.ClusterTls? Tls { get; init; }

    /// <summary>The same certificates for the ring's TLS (used when the job asks for a TLS data plane).</summary>
    public Collectives.DataPlaneTlsOptions? DataPlaneTls => Tls is { } t ? new(t.Certificate, t.Authority) : null;
}

/// <summary>Process exit codes of `pretrain worker`, so a launcher or Kubernetes can tell what happened.</summary>
public static class WorkerExitCodes
{
    public const int Finished = 0;
    public const int Failed = 1;
    /// <summary>The coordinator refused the registration: no or a wrong job secret (a worker whose id stays held by a live process exits <see cref="Stopped"/>).</summary>
    public const int Refused = 2;
    public const int PeerLost = 3;
    public const int Stopped = 4;
    /// <summary>No coordinator answered for --coordinator-timeout while this worker could not train (none at start, or its ring broke).</summary>
    public const int CoordinatorUnreachable = 5;
}
