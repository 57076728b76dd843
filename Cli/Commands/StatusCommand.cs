using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Akka.Actor;
using Akka.Configuration;
using Pretrain.Cli.Runs;
using Pretrain.Coordinator.Summary;
using Pretrain.Shared.Cluster;
using Pretrain.Shared.Messages;
using Pretrain.Shared.Serialization;

namespace Pretrain.Cli.Commands;

/// <summary>`pretrain status`: asks a running coordinator what its job is doing, or reads a finished run's summary.json.</summary>
static class StatusCommand
{
    public static Command Create()
    {
        var coordinator = new Option<string?>("--coordinator") { Description = "HOST:PORT of the coordinator's Akka endpoint." };
        var runDir = new Option<DirectoryInfo?>("--run-dir") { Description = "Run directory of the job; its coordinator.json says where the coordinator listens." };
        var timeout = CommonOptions.Timeout();
        timeout.DefaultValueFactory = _ => 10;
        var tlsCert = CommonOptions.TlsCertificate();
        var tlsCa = CommonOptions.TlsAuthority();
        var command = new Command("status", "Show what a running job is doing: phase, generation, workers, last step and checkpoint (a finished run: its summary.json).")
        {
            coordinator, runDir, timeout, tlsCert, tlsCa,
        };
        command.Validators.Add(r =>
        {
            if ((r.GetValue(coordinator) == null) == (r.GetValue(runDir) == null)) r.AddError("give either --coordinator HOST:PORT or --run-dir DIR.");
        });
        command.SetAction((parse, ct) => CommandRunner.RunAsync(async () =>
        {
            if (parse.GetValue(runDir) is { } dir && FinishedSummary(dir.FullName) is { } finished)
            {
                // The job has ended: its summary says all there is, and no coordinator is left to ask.
                Print(finished.Summary, finished.Path);
                return 0;
            }
            var (host, port) = parse.GetValue(runDir) is { } run
                ? CoordinatorFile.Read(run.FullName) is var file ? (file.Host, file.Port) : default
                : Endpoint.Parse(parse.GetValue(coordinator)!, "--coordinator");
            var status = await AskAsync(host, port, CommonOptions.LoadTls(parse, tlsCert, tlsCa), TimeSpan.FromSeconds(parse.GetValue(timeout)), ct);
            Console.WriteLine($"phase       {status.Phase}");
            Console.WriteLine($"generation  {status.Generation}");
            Console.WriteLine($"workers     {status.Workers.Count}: {string.Join(", ", status.Workers)}");
            Console.WriteLine($"last step   {status.LastStep}");
            Console.WriteLine($"checkpoint  {(status.LastCheckpointStep > 0 ? "step " + status.LastCheckpointStep : "none yet")}");
            if (status.FailureReason != null) Console.WriteLine($"failure     {status.FailureReason}");
            return 0;
        }));
        return command;
    }

    /// <summary>
    /// summary.json of the run directory when it belongs to the last coordinator started there (written at or after the
    /// start recorded in coordinator.json, or there is no coordinator.json); null while that coordinator has not written one.
    /// </summary>
    static (RunSummary Summary, string Path)? FinishedSummary(string runDirectory)
    {
        string path = Path.Combine(runDirectory, "summary.json");
        if (!File.Exists(path)) return null;
        if (File.Exists(Path.Combine(runDirectory, CoordinatorFile.FileName)))
        {
            var started = CoordinatorFile.Read(runDirectory).StartedUtc;
            if (started.Kind == DateTimeKind.Local) started = started.ToUniversalTime();
            if (File.GetLastWriteTimeUtc(path) < started - TimestampSlack) return null;   // an earlier run's; this one is live
        }
        try
        {
            return (RunSummary.Read(path), path);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path} is not valid: {e.Message}", e);
        }
    }

    /// <summary>
    /// The kernel stamps a file from a clock that may lag DateTime.UtcNow by a tick (4-10 ms); a summary written right
    /// after its coordinator started must still count as that coordinator's. A restarted one starts seconds later.
    /// </summary>
    static readonly TimeSpan TimestampSlack = TimeSpan.FromMilliseconds(100);

    static void Print(RunSummary summary, string path)
    {
        Console.WriteLine($"status      {summary.Status} (the job has ended; from {path})");
        Console.WriteLine($"workers     {summary.WorldSize}");
        Console.WriteLine($"steps       {summary.Steps}");
        Console.WriteLine($"final loss  {summary.FinalLoss.ToString("0.####", CultureInfo.InvariantCulture)}");
        Console.WriteLine($"checkpoint  {summary.LastCheckpoint ?? "none"}");
        if (summary.Error != null) Console.WriteLine($"error       {summary.Error}");
    }

    /// <summary>A plain remoting client (not a cluster member) asks the job actor by path.</summary>
    static async Task<JobStatus> AskAsync(string host, int port, ClusterTls? tls, TimeSpan timeout, CancellationToken ct)
    {
        var config = ConfigurationFactory.ParseString($$"""
            akka {
              loglevel = ERROR
              stdout-loglevel = ERROR
              actor.provider = remote
              remote.log-remote-lifecycle-events = off
              remote.dot-netty.tcp { hostname = "127.0.0.1", port = 0 }
            }
            {{PretrainSerializer.Hocon()}}
            """);
        using var system = ClusterTls.CreateSystem(config, tls);
        try
        {
            return await system.ActorSelection(ClusterHocon.JobPath(host, port, tls is not null)).Ask<JobStatus>(new FetchJobStatus(), timeout, ct);
        }
        catch (AskTimeoutException)
        {
            throw new UserError($"the coordinator at {host}:{port} did not answer within {timeout.TotalSeconds:0} s (has the job ended? see summary.json in its run directory)");
        }
        finally
        {
            await system.Terminate();
        }
    }
}
