using System.CommandLine;
using Pretrain.Data.Preparation;
using Pretrain.Worker.Host;
using Pretrain.Worker.Preparation;

namespace Pretrain.Cli.Commands;

/// <summary>`pretrain worker`: one data-parallel training process (a pod on Kubernetes, a child of `local`).</summary>
static class WorkerCommand
{
    public static Command Create(Func<PrepareSpec, IPreparationPlan> plans)
    {
        var coordinator = new Option<string>("--coordinator")
        {
            Description = "HOST:PORT of the coordinator's Akka endpoint (printed by `pretrain coordinator`).",
            Required = true,
        };
        coordinator.Check(v => Endpoint.TryParse(v, out _, out _) ? null : $"--coordinator must be HOST:PORT (e.g. 127.0.0.1:4053), got '{v}'.");
        var host = new Option<string>("--host") { Description = "Address this worker binds and advertises.", DefaultValueFactory = _ => "127.0.0.1" };
        var dataPort = new Option<int>("--data-port") { Description = "Data-plane (collectives) port; 0 = any free port.", DefaultValueFactory = _ => 0 }
            .InRange(0, CommonOptions.MaxPort);
        var metricsPort = CommonOptions.MetricsPort("worker", 0);
        var threads = new Option<int>("--threads") { Description = "Torch threads; 0 = all cores.", DefaultValueFactory = _ => 0 }.InRange(0);
        var workerId = new Option<string?>("--worker-id") { Description = "Name in logs and the journal; default HOST-PID." };
        var parentPid = new Option<int?>("--parent-pid") { Description = "Exit when this process exits (set by `pretrain local`)." };
        var timeout = CommonOptions.Timeout();
        var coordinatorTimeout = new Option<int>("--coordinator-timeout")
        {
            Description = "Seconds a worker that cannot train (none started yet, or its ring broke) waits for a coordinator before it exits 5. " +
                          "While it trains it waits as long as training lasts.",
            DefaultValueFactory = _ => 300,
        };
        coordinatorTimeout.Check(v => v < 1 ? $"--coordinator-timeout must be at least 1 second, got {v}." : null);
        var preempted = new Option<int>("--preempted-exit-code")
        {
            Description = "Exit code after leaving the job on SIGTERM (a preempted pod); e.g. 143 so a Kubernetes Job's podFailurePolicy replaces the pod.",
            DefaultValueFactory = _ => 0,
        }.InRange(0, 255);
        var verbose = CommonOptions.Verbose();
        var secretFile = CommonOptions.SecretFile("worker");
        var metricsHost = CommonOptions.MetricsHost();
        var tlsCert = CommonOptions.TlsCertificate();
        var tlsCa = CommonOptions.TlsAuthority();
        var trace = CommonOptions.Trace("worker");
        var transport = CommonOptions.Transport();
        var prepare = new Option<bool>("--prepare") { Description = "Take corpus-preparation tasks from `pretrain prepare` instead of a training rank." };

        var command = new Command("worker", "Run one data-parallel worker: join the coordinator, take a rank, train, report.")
        {
            coordinator, host, dataPort, metricsPort, threads, workerId, parentPid, timeout, coordinatorTimeout, preempted, verbose, prepare, secretFile, metricsHost, tlsCert, tlsCa,
            trace, transport,
        };
        command.SetAction((parse, ct) => CommandRunner.RunAsync(() =>
        {
            Endpoint.TryParse(parse.GetRequiredValue(coordinator), out string coordinatorHost, out int coordinatorPort);
            var options = new WorkerOptions
            {
                CoordinatorHost = coordinatorHost,
                CoordinatorPort = coordinatorPort,
                Host = parse.GetValue(host)!,
                DataPort = parse.GetValue(dataPort),
                MetricsPort = parse.GetValue(metricsPort),
                Threads = parse.GetValue(threads),
                ParentProcessId = parse.GetValue(parentPid),
                Timeout = TimeSpan.FromSeconds(parse.GetValue(timeout)),
                CoordinatorTimeout = TimeSpan.FromSeconds(parse.GetValue(coordinatorTimeout)),
                PreemptedExitCode = parse.GetValue(preempted),
                Verbose = parse.GetValue(verbose),
                // Read before anything starts: a missing or short file is exit 2 naming it.
                Secret = parse.GetValue(secretFile) is { } file ? Pretrain.Shared.Security.JobSecret.Load(file.FullName) : null,
                MetricsHost = parse.GetValue(metricsHost),
                Tls = CommonOptions.LoadTls(parse, tlsCert, tlsCa),
                TracePath = parse.GetValue(trace)?.FullName,
                Transport = CommonOptions.ParseTransport(parse.GetValue(transport)!),
            };
            if (parse.GetValue(workerId) is { } id) options = options with { WorkerId = id };
            return parse.GetValue(prepare) ? PreparationWorkerProcess.RunAsync(options, plans, ct) : WorkerProcess.RunAsync(options, ct);
        }));
        return command;
    }
}
