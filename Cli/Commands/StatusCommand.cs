using System.CommandLine;
using Akka.Actor;
using Akka.Configuration;
using Pretrain.Cli.Runs;
using Pretrain.Shared.Cluster;
using Pretrain.Shared.Messages;
using Pretrain.Shared.Serialization;

namespace Pretrain.Cli.Commands;

/// <summary>`pretrain status`: asks a running coordinator what its job is doing.</summary>
static class StatusCommand
{
    public static Command Create()
    {
        var coordinator = new Option<string?>("--coordinator") { Description = "HOST:PORT of the coordinator's Akka endpoint." };
        var runDir = new Option<DirectoryInfo?>("--run-dir") { Description = "Run directory of the job; its coordinator.json says where the coordinator listens." };
        var timeout = CommonOptions.Timeout();
        timeout.DefaultValueFactory = _ => 10;
        var command = new Command("status", "Show what a running job is doing: phase, generation, workers, last step and checkpoint.")
        {
            coordinator, runDir, timeout,
        };
        command.Validators.Add(r =>
        {
            if ((r.GetValue(coordinator) == null) == (r.GetValue(runDir) == null)) r.AddError("give either --coordinator HOST:PORT or --run-dir DIR.");
        });
        command.SetAction((parse, ct) => CommandRunner.RunAsync(async () =>
        {
            var (host, port) = parse.GetValue(runDir) is { } dir
                ? CoordinatorFile.Read(dir.FullName) is var file ? (file.Host, file.Port) : default
                : Endpoint.Parse(parse.GetValue(coordinator)!, "--coordinator");
            var status = await AskAsync(host, port, TimeSpan.FromSeconds(parse.GetValue(timeout)), ct);
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

    /// <summary>A plain remoting client (not a cluster member) asks the job actor by path.</summary>
    static async Task<JobStatus> AskAsync(string host, int port, TimeSpan timeout, CancellationToken ct)
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
        using var system = ActorSystem.Create(ClusterHocon.SystemName, config);
        try
        {
            return await system.ActorSelection(ClusterHocon.JobPath(host, port)).Ask<JobStatus>(new FetchJobStatus(), timeout, ct);
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
