using Akka.Actor;
using Akka.Configuration;
using Akka.Persistence.Sql;
using Pretrain.Shared.Cluster;

namespace Pretrain.Coordinator;

/// <summary>
/// The coordinator's ActorSystem: cluster seed of itself with the journal configured, started and
/// stopped with bounded waits. The training job (<see cref="CoordinatorHost"/>) and corpus preparation
/// (<see cref="Preparation.PreparationHost"/>) each put their persistent actor on one.
/// </summary>
public static class CoordinatorNode
{
    /// <summary>Starts the system and waits until it is Up as its own seed. Returns it and its bound port.</summary>
    public static async Task<(ActorSystem System, int Port)> StartAsync(CoordinatorOptions options, CancellationToken ct)
    {
        Directory.CreateDirectory(options.RunDirectory);
        var journal = options.Journal ?? JournalOptions.InRunDirectory(options.RunDirectory);
        var config = ConfigurationFactory.ParseString(journal.Hocon())
            .WithFallback(ConfigurationFactory.ParseString(
                ClusterHocon.Coordinator(options.Hostname, options.Port, options.PublicHostname, options.VerboseLogging)))
            .WithFallback(SqlPersistence.DefaultConfiguration);

        var system = ClusterTls.CreateSystem(config, options.Tls);
        try
        {
            // The coordinator is its own seed: with port 0 its address is only known once bound.
            var cluster = Akka.Cluster.Cluster.Get(system);
            var up = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            cluster.RegisterOnMemberUp(() => up.TrySetResult());
            cluster.Join(cluster.SelfAddress);
            await up.Task.WaitAsync(options.Timeout, ct);
            return (system, cluster.SelfAddress.Port ?? throw new InvalidOperationException("The Akka transport has no port."));
        }
        catch
        {
            await system.Terminate();
            throw;
        }
    }

    /// <summary>
    /// Stops the node, bounded: leaving a cluster whose workers are gone or unreachable would
    /// otherwise wait on gossip for seconds, and every event is journaled before an outcome is known.
    /// </summary>
    /// <param name="immediately">Skip the polite cluster leave (a failed job: its workers are gone or going).</param>
    public static async Task StopAsync(ActorSystem system, bool immediately = false)
    {
        if (immediately)
        {
            // Nothing left to tell anyone: the process exit closes every socket (the launcher exits within 2 s of a failure).
            await Task.WhenAny(system.Terminate(), Task.Delay(TimeSpan.FromMilliseconds(500)));
            return;
        }
        var stopped = Task.WhenAll(CoordinatedShutdown.Get(system).Run(CoordinatedShutdown.ActorSystemTerminateReason.Instance), system.WhenTerminated);
        if (await Task.WhenAny(stopped, Task.Delay(TimeSpan.FromSeconds(3))) != stopped)
            await system.Terminate().WaitAsync(TimeSpan.FromSeconds(2)).ContinueWith(_ => { }, TaskScheduler.Default);
    }
}
