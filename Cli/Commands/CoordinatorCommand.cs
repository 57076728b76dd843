using System.CommandLine;
using Pretrain.Cli.Runs;

namespace Pretrain.Cli.Commands;

/// <summary>`pretrain coordinator`: the control plane as its own process (a Kubernetes pod, or by hand).</summary>
static class CoordinatorCommand
{
    public static Command Create()
    {
        var recipe = CommonOptions.Recipe();
        var workers = CommonOptions.Workers(2).Positive();
        var maxSteps = CommonOptions.MaxSteps();
        var runDir = CommonOptions.RunDir();
        var resume = CommonOptions.Resume();
        var resumeOrStart = CommonOptions.ResumeOrStart();
        var overwrite = CommonOptions.Overwrite();
        var metricsPort = CommonOptions.MetricsPort("coordinator", 9400);
        var host = new Option<string>("--host") { Description = "Address to bind (0.0.0.0 in a pod).", DefaultValueFactory = _ => "127.0.0.1" };
        var publicHost = new Option<string?>("--public-host") { Description = "Address workers use to reach this coordinator, when it differs from --host." };
        var port = new Option<int>("--port") { Description = "Akka port workers join (0 = any free port, printed).", DefaultValueFactory = _ => 4053 }
            .InRange(0, CommonOptions.MaxPort);
        var journal = new Option<string?>("--journal")
        {
            Description = "PostgreSQL connection string for the journal (e.g. 'Host=db;Database=pretrain;Username=pretrain'). Default: SQLite journal.db in the run directory.",
        };
        var jobId = new Option<string>("--job-id") { Description = "Job name in the journal; a restarted coordinator with the same id continues the job.", DefaultValueFactory = _ => "job" };
        var timeout = CommonOptions.Timeout();
        var idleTimeout = new Option<int>("--idle-timeout")
        {
            Description = "Seconds without any connected worker after which the coordinator exits (code 3), the job journaled; 0 = wait forever.",
            DefaultValueFactory = _ => 600,
        }.Check(v => v < 0 ? $"--idle-timeout must be 0 (wait forever) or a number of seconds, got {v}." : null);
        var linger = new Option<int>("--linger")
        {
            Description = "Seconds the coordinator stays up after the job ended, telling workers that register late (a Job's replacement pods) " +
                          "that it is over, so they exit 0 (it completed) or 1 (it failed). Default 0: exit at once.",
        }.Check(v => v < 0 ? $"--linger must be 0 or a number of seconds, got {v}." : null);
        var verbose = CommonOptions.Verbose();
        var secretFile = CommonOptions.SecretFile("coordinator");
        var metricsHost = CommonOptions.MetricsHost();
        var tlsCert = CommonOptions.TlsCertificate();
        var tlsCa = CommonOptions.TlsAuthority();
        var tlsDataPlane = new Option<bool>("--tls-data-plane")
        {
            Description = "Run the ring (gradients) over mutual TLS too; every worker then needs --tls-cert and --tls-ca. Needs --tls-cert here.",
        };

        var command = new Command("coordinator", "Run the coordinator alone: workers started elsewhere join it with `pretrain worker --coordinator HOST:PORT`.")
        {
            recipe, workers, maxSteps, runDir, resume, resumeOrStart, overwrite, metricsPort, host, publicHost, port, journal, jobId, timeout, idleTimeout, linger, verbose, secretFile, metricsHost, tlsCert, tlsCa, tlsDataPlane,
        };
        command.SetAction((parse, ct) => CommandRunner.RunAsync(() => CoordinatorRun.RunAsync(new RunOptions
        {
            RecipePath = parse.GetRequiredValue(recipe).FullName,
            Workers = parse.GetValue(workers),
            MaxSteps = parse.GetValue(maxSteps),
            RunDirectory = parse.GetValue(runDir)?.FullName,
            Resume = parse.GetValue(resume),
            ResumeOrStart = parse.GetValue(resumeOrStart),
            Overwrite = parse.GetValue(overwrite),
            MetricsPort = parse.GetValue(metricsPort),
            Host = parse.GetValue(host)!,
            PublicHost = parse.GetValue(publicHost),
            Port = parse.GetValue(port),
            PostgresJournal = parse.GetValue(journal),
            JobId = parse.GetValue(jobId),
            Timeout = TimeSpan.FromSeconds(parse.GetValue(timeout)),
            IdleTimeout = parse.GetValue(idleTimeout) is > 0 and var idle ? TimeSpan.FromSeconds(idle) : null,
            Linger = TimeSpan.FromSeconds(parse.GetValue(linger)),
            Verbose = parse.GetValue(verbose),
            SecretFile = parse.GetValue(secretFile)?.FullName,
            MetricsHost = parse.GetValue(metricsHost),
            Tls = CommonOptions.LoadTls(parse, tlsCert, tlsCa),
            TlsDataPlane = parse.GetValue(tlsDataPlane),
        }, launch: null, ct)));
        return command;
    }
}
