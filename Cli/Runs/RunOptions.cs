namespace Pretrain.Cli.Runs;

/// <summary>What a coordinator run needs: `pretrain local` and `pretrain coordinator` share it.</summary>
public sealed record RunOptions
{
    public required string RecipePath { get; init; }
    /// <summary>World size: the coordinator starts the generation when this many workers joined.</summary>
    public int Workers { get; init; } = 2;
    public long? MaxSteps { get; init; }
    public string? RunDirectory { get; init; }
    public bool Resume { get; init; }
    /// <summary>--resume-or-start: resume from the newest valid checkpoint, or start at step 0 when none verifies.</summary>
    public bool ResumeOrStart { get; init; }
    /// <summary>--overwrite: delete the run directory's checkpoints, journal and summary, then start afresh.</summary>
    public bool Overwrite { get; init; }
    /// <summary>Coordinator /metrics port (0 = any free, -1 = off).</summary>
    public int MetricsPort { get; init; }
    /// <summary>First worker /metrics port for local workers (worker i: + i; 0 = any free, -1 = off).</summary>
    public int WorkerMetricsPort { get; init; }
    /// <summary>Address the coordinator binds (Akka and metrics); 127.0.0.1 for local runs.</summary>
    public string Host { get; init; } = "127.0.0.1";
    /// <summary>Address workers reach the coordinator at, when it differs (a Kubernetes service).</summary>
    public string? PublicHost { get; init; }
    /// <summary>Akka port; 0 = any free port (local runs).</summary>
    public int Port { get; init; }
    /// <summary>PostgreSQL connection string for the journal; null = SQLite journal.db in the run directory.</summary>
    public string? PostgresJournal { get; init; }
    /// <summary>Persistence id of the job; `local` makes a new one per launch.</summary>
    public string? JobId { get; init; }
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(30);
    /// <summary>`pretrain local`: how many times per run a dead worker process is started again (it joins as a newcomer).</summary>
    public int MaxRestarts { get; init; } = 3;
    /// <summary>`pretrain coordinator`: exit (code 3, the job journaled) when no worker has been connected for this long; null = never.</summary>
    public TimeSpan? IdleTimeout { get; init; }
    /// <summary>`pretrain coordinator --linger`: how long it answers late workers "the job completed" after it did.</summary>
    public TimeSpan Linger { get; init; }
    public bool Verbose { get; init; }
    /// <summary>--secret-file: the job secret workers prove; null = RUN_DIR/secret, made when missing.</summary>
    public string? SecretFile { get; init; }
    /// <summary>--metrics-host: where the metrics and health endpoint binds; null = <see cref="Host"/>.</summary>
    public string? MetricsHost { get; init; }
    /// <summary>--tls-cert and --tls-ca: Akka.Remote over mutual TLS; `local --tls` makes them in RUN_DIR/tls.</summary>
    public Pretrain.Shared.Cluster.ClusterTls? Tls { get; init; }
    /// <summary>--tls-data-plane (`local --tls` too): the ring over mutual TLS as well.</summary>
    public bool TlsDataPlane { get; init; }
    /// <summary>`local --tls`: make a job CA and node certificates in RUN_DIR/tls and use them on both planes.</summary>
    public bool MakeTls { get; init; }
    /// <summary>`local --trace FILE`: each worker writes its timeline to logs/ID.trace.json, merged into this one Chrome trace when the workers have exited.</summary>
    public string? TracePath { get; init; }
    /// <summary>`local --transport auto|tcp`: passed on to every worker (shared memory between them, or TCP).</summary>
    public string Transport { get; init; } = "auto";
}
