using System.CommandLine;

namespace Pretrain.Cli.Commands;

/// <summary>Options shared by several commands, declared once so help texts and defaults agree.</summary>
static class CommonOptions
{
    public static Option<FileInfo> Recipe(bool required = true) => new("--recipe")
    {
        Description = "The recipe (YAML) describing data, model, method, optimizer, schedule, batch and checkpoints.",
        Required = required,
    };

    public static Option<int> Workers(int defaultValue) => new("--workers")
    {
        Description = "Number of data-parallel worker processes (the world size).",
        DefaultValueFactory = _ => defaultValue,
    };

    public static Option<long?> MaxSteps()
    {
        var option = new Option<long?>("--max-steps")
        {
            Description = "Stop after this step (the schedule still follows the recipe's `steps`). Default: the recipe's steps.",
        };
        // 0 or less would run no step and report a NaN loss as a completed job.
        return option.Check(steps => steps is < 1 ? $"{option.Name} must be at least 1, got {steps}." : null);
    }

    public static Option<DirectoryInfo?> RunDir() => new("--run-dir")
    {
        Description = "Run directory: journal.db, checkpoints/, logs/, summary.json. Default: runs/<recipe>-<time>.",
    };

    public static Option<bool> Resume() => new("--resume")
    {
        Description = "Continue from the newest checkpoint in the run directory whose checksums verify; fails (exit 2) when none does.",
    };

    public static Option<bool> ResumeOrStart() => new("--resume-or-start")
    {
        Description = "Like --resume, but start from step 0 when the run directory holds no checkpoint that verifies.",
    };

    public static Option<bool> Overwrite() => new("--overwrite")
    {
        Description = "Delete what an earlier run left in the run directory (checkpoints, journal, summary, logs) and start afresh.",
    };

    public static Option<int> MetricsPort(string who, int defaultValue) => new Option<int>("--metrics-port")
    {
        Description = $"Port of the {who}'s Prometheus /metrics endpoint (0 = any free port; printed at start; -1 = off).",
        DefaultValueFactory = _ => defaultValue,
    }.InRange(-1, MaxPort);

    public static Option<int> Timeout() => new Option<int>("--timeout")
    {
        Description = "Seconds any network wait may take (collectives, rendezvous) before it fails with an error naming the peer.",
        DefaultValueFactory = _ => 30,
    }.Positive();

    /// <summary>--transport auto|tcp: how ring links between workers of one host carry data.</summary>
    public static Option<string> Transport()
    {
        var option = new Option<string>("--transport")
        {
            Description = "auto: ring links between workers on the same host (same boot and network namespace) carry data through shared memory " +
                          "(/dev/shm) unless the ring is TLS, TCP otherwise; tcp: always TCP.",
            DefaultValueFactory = _ => "auto",
        };
        option.AcceptOnlyFromAmong("auto", "tcp");
        return option;
    }

    /// <summary>The <see cref="Transport"/> option's value as the data plane takes it.</summary>
    public static Pretrain.Worker.Collectives.TransportPolicy ParseTransport(string value) =>
        value == "tcp" ? Pretrain.Worker.Collectives.TransportPolicy.Tcp : Pretrain.Worker.Collectives.TransportPolicy.Auto;

    public static Option<FileInfo?> SecretFile(string who) => new("--secret-file")
    {
        Description = who == "coordinator"
            ? "The job secret every worker must prove (at least 16 bytes; a Kubernetes Secret mounted as a file). Default: RUN_DIR/secret, made (mode 0600) when missing."
            : who == "prepare"
            ? "The job secret preparing workers must prove (workers started elsewhere need the same file). Default: a fresh one for this run's own workers."
            : "The job secret, the same file the coordinator was given: proved at registration and for every ring connection. Without it the coordinator refuses this worker.",
    };

    public static Option<FileInfo?> TlsCertificate() => new("--tls-cert")
    {
        Description = "This node's certificate with its key (NAME.pfx from `pretrain certs`): Akka.Remote runs over mutual TLS, and peers must hold certificates of the same job CA.",
    };

    public static Option<FileInfo?> TlsAuthority() => new("--tls-ca")
    {
        Description = "The job CA (ca.crt from `pretrain certs`) that must have issued every peer's certificate. Needed with --tls-cert.",
    };

    /// <summary>The certificates of --tls-cert and --tls-ca, or null when neither is given; exit 2 naming what is missing.</summary>
    public static Pretrain.Shared.Cluster.ClusterTls? LoadTls(System.CommandLine.ParseResult parse, Option<FileInfo?> certificate, Option<FileInfo?> authority) =>
        (parse.GetValue(certificate), parse.GetValue(authority)) switch
        {
            (null, null) => null,
            ({ } cert, { } ca) => Pretrain.Shared.Cluster.ClusterTls.Load(cert.FullName, ca.FullName),
            (null, _) => throw new UserError("--tls-ca needs --tls-cert (this node's certificate, NAME.pfx from `pretrain certs`)."),
            (_, null) => throw new UserError("--tls-cert needs --tls-ca (the job CA, ca.crt from `pretrain certs`)."),
        };

    public static Option<string?> MetricsHost() => new("--metrics-host")
    {
        Description = "Address the /metrics, /healthz and /readyz endpoint binds (e.g. 0.0.0.0 in a pod, 127.0.0.1 to keep it local). Default: --host.",
    };

    /// <summary>
    /// --trace FILE: a Chrome trace (the Trace Event Format's JSON, as Horovod's timeline) of the step phases and
    /// collectives; the file's folder must exist, and the file is replaced.
    /// </summary>
    public static Option<FileInfo?> Trace(string who)
    {
        var option = new Option<FileInfo?>("--trace")
        {
            Description = who == "local"
                ? "Write a timeline of every worker's step phases and collectives to this file (a Chrome trace: open it in https://ui.perfetto.dev or chrome://tracing), merged when the run ends."
                : "Write a timeline of this worker's step phases and collectives to this file (a Chrome trace: open it in https://ui.perfetto.dev or chrome://tracing), flushed every second.",
        };
        return option.Check(file =>
            file is null ? null
            : Directory.Exists(file.FullName) ? $"{option.Name}: {file.FullName} is a folder; give the trace file's name (e.g. trace.json)."
            : file.Directory is { Exists: false } folder ? $"{option.Name}: the folder {folder.FullName} does not exist."
            : null);
    }

    public static Option<bool> Verbose() => new("--verbose", "-v")
    {
        Description = "Log at information level (Akka, rendezvous, checkpoints) instead of warnings only.",
    };

    /// <summary>The highest TCP port.</summary>
    public const int MaxPort = 65535;

    /// <summary>Positive-integer validation with a message that names the option.</summary>
    public static Option<int> Positive(this Option<int> option) => option.InRange(1);

    /// <summary>Range validation, <paramref name="min"/> to <paramref name="max"/> inclusive, with a message that names the option.</summary>
    public static Option<int> InRange(this Option<int> option, int min, int max = int.MaxValue) =>
        option.Check(value => value < min ? $"{option.Name} must be at least {min}, got {value}."
                            : value > max ? $"{option.Name} must be at most {max}, got {value}." : null);

    /// <summary>
    /// A validation whose message names the option: <paramref name="error"/> says what is wrong with a value, or
    /// null. A value that is not a <typeparamref name="T"/> at all is left to the parser, whose own error names
    /// the option and the text (reading it here would throw, and crash the command line with a stack trace).
    /// </summary>
    public static Option<T> Check<T>(this Option<T> option, Func<T, string?> error)
    {
        option.Validators.Add(r =>
        {
            T value;
            try { value = r.GetValueOrDefault<T>()!; }
            catch (InvalidOperationException) { return; }
            if (error(value) is { } message) r.AddError(message);
        });
        return option;
    }
}
