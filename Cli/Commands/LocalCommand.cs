using System.CommandLine;
using Pretrain.Cli.Runs;

namespace Pretrain.Cli.Commands;

/// <summary>`pretrain local`: the embedded default — coordinator in this process, workers on loopback.</summary>
static class LocalCommand
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
        var metricsPort = CommonOptions.MetricsPort("coordinator", 0);
        var workerMetricsPort = new Option<int>("--worker-metrics-port")
        {
            Description = "First port of the workers' /metrics endpoints; worker i uses this + i (0 = any free port; -1 = off).",
            DefaultValueFactory = _ => 0,
        }.InRange(-1, CommonOptions.MaxPort);
        var maxRestarts = new Option<int>("--max-restarts")
        {
            Description = "How many times per run a worker process that dies is started again; it rejoins as a newcomer while the others train on (0 = never).",
            DefaultValueFactory = _ => 3,
        }.Check(v => v < 0 ? $"--max-restarts must be at least 0, got {v}." : null);
        var timeout = CommonOptions.Timeout();
        var verbose = CommonOptions.Verbose();
        var tls = new Option<bool>("--tls")
        {
            Description = "Mutual TLS on both planes: a job CA and node certificates are made in RUN_DIR/tls (as `pretrain certs` does) and every process uses them.",
        };

        var trace = CommonOptions.Trace("local");
        var transport = CommonOptions.Transport();

        var command = new Command("local", "Run a job on this machine: the coordinator in-process, N worker processes on loopback, the SQLite journal in the run directory.")
        {
            recipe, workers, maxSteps, runDir, resume, resumeOrStart, overwrite, metricsPort, workerMetricsPort, maxRestarts, timeout, verbose, tls, trace,
            transport,
        };
        command.SetAction((parse, ct) => CommandRunner.RunAsync(() => LocalRun.RunAsync(new RunOptions
        {
            RecipePath = parse.GetRequiredValue(recipe).FullName,
            Workers = parse.GetValue(workers),
            MaxSteps = parse.GetValue(maxSteps),
            RunDirectory = parse.GetValue(runDir)?.FullName,
            Resume = parse.GetValue(resume),
            ResumeOrStart = parse.GetValue(resumeOrStart),
            Overwrite = parse.GetValue(overwrite),
            MetricsPort = parse.GetValue(metricsPort),
            WorkerMetricsPort = parse.GetValue(workerMetricsPort),
            Timeout = TimeSpan.FromSeconds(parse.GetValue(timeout)),
            MaxRestarts = parse.GetValue(maxRestarts),
            Verbose = parse.GetValue(verbose),
            MakeTls = parse.GetValue(tls),
            TlsDataPlane = parse.GetValue(tls),
            TracePath = parse.GetValue(trace)?.FullName,
            Transport = parse.GetValue(transport)!,
        }, ct)));
        return command;
    }
}
