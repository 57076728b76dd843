using System.Security.Cryptography.X509Certificates;
using Akka.Actor;
using Akka.Configuration;
using Microsoft.Data.Sqlite;
using Pretrain.Coordinator;
using Pretrain.Shared.Cluster;
using Pretrain.Shared.Messages;
using Pretrain.Shared.Security;
using Pretrain.Tests.Coordinator;
using Pretrain.Tests.Infrastructure;
using Xunit;

namespace Pretrain.Tests.Security;

/// <summary>
/// Akka.Remote over mutual TLS: a node with a certificate of the job CA joins and registers; a node whose certificate
/// another CA issued, or one without TLS, never associates with the coordinator (it cannot join, nor send it anything).
/// And a whole job, both planes over TLS, from `pretrain local --tls`.
/// </summary>
public sealed class TlsClusterTests : IAsyncLifetime
{
    static readonly TimeSpan Month = TimeSpan.FromDays(30);
    static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);
    static readonly string[] Loopback = ["localhost", "127.0.0.1"];
    readonly string _runDirectory = Directory.CreateTempSubdirectory("pretrain-tls-").FullName;
    readonly X509Certificate2 _authority = JobCertificates.CreateAuthority("tls-test", Month);
    readonly JobSecret _secret = JobSecret.Random();
    readonly List<ActorSystem> _nodes = [];
    CoordinatorHost _host = null!;

    public async Task InitializeAsync() => _host = await CoordinatorHost.StartAsync(new CoordinatorOptions
    {
        RunDirectory = _runDirectory, Secret = _secret, Tls = Tls("coordinator"),
    });

    public async Task DisposeAsync()
    {
        await Task.WhenAll(_nodes.Select(n => n.Terminate()));
        await _host.DisposeAsync();
        SqliteConnection.ClearAllPools();
        Directory.Delete(_runDirectory, recursive: true);
    }

    ClusterTls Tls(string node, X509Certificate2? issuer = null) => new(JobCertificates.CreateNode(issuer ?? _authority, node, Loopback, Month), _authority);

    /// <summary>A worker node joining the coordinator, over TLS with <paramref name="tls"/> or plain; whether it came Up within <paramref name="wait"/>.</summary>
    async Task<(ActorSystem System, bool Up)> JoinAsync(ClusterTls? tls, TimeSpan wait)
    {
        var config = ConfigurationFactory.ParseString(ClusterHocon.Worker("127.0.0.1", _host.Port, tls: tls is not null));
        var system = ClusterTls.CreateSystem(config, tls);
        _nodes.Add(system);
        var up = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Akka.Cluster.Cluster.Get(system).RegisterOnMemberUp(() => up.TrySetResult());
        return (system, await Task.WhenAny(up.Task, Task.Delay(wait)) == up.Task);
    }

    [Fact]
    public async Task A_node_with_a_certificate_of_the_job_CA_joins_over_TLS_and_registers()
    {
        Assert.StartsWith("akka.ssl.tcp://", _host.JobPath);
        await _host.SubmitAsync(JobStateTests.Spec(1));
        var (node, up) = await JoinAsync(Tls("worker"), Timeout);
        Assert.True(up, "the node came Up");

        var inbox = Inbox.Create(node);
        await SignedRegistration.SendAsync(node.ActorSelection(_host.JobPath), inbox,
            new RegisterWorker("w0", "127.0.0.1", 29500, 0, Environment.ProcessId, "tls"), _secret, Timeout);
        Assert.IsType<WorkerRegistered>(await inbox.ReceiveAsync(Timeout));
    }

    [Fact]
    public async Task Nodes_without_a_certificate_of_the_job_CA_cannot_associate()
    {
        static double Refused() => Pretrain.Shared.Telemetry.PretrainMetrics.RejectedConnectionsTotal.WithLabels("control", "bad_certificate").Value;
        double refusedBefore = Refused();
        using var other = JobCertificates.CreateAuthority("intruder", Month);

        // The foreign node starts joining at once; what is waited for is the coordinator refusing its certificate itself.
        var (foreign, _) = await JoinAsync(new ClusterTls(JobCertificates.CreateNode(other, "worker", Loopback, Month), _authority), TimeSpan.Zero);
        var deadline = DateTime.UtcNow + Timeout;
        while (Refused() <= refusedBefore)
        {
            Assert.True(DateTime.UtcNow < deadline, $"the coordinator did not refuse the foreign certificate within {Timeout}");
            await Task.Delay(20);
        }
        // A plain node's bytes are refused by the TLS layer without a count: that it stays out can only be waited for.
        var (plain, plainUp) = await JoinAsync(null, TimeSpan.FromSeconds(2));

        Assert.False(Akka.Cluster.Cluster.Get(foreign).SelfMember.Status == Akka.Cluster.MemberStatus.Up, "a node whose certificate another CA issued joined");
        Assert.False(plainUp, "a node without TLS joined");
        Assert.Single(Akka.Cluster.Cluster.Get(_host.System).State.Members);      // the coordinator alone
        // Nor can either send the job actor anything.
        var inbox = Inbox.Create(foreign);
        foreign.ActorSelection(_host.JobPath).Tell(new FetchJobStatus(), inbox.Receiver);
        await Assert.ThrowsAnyAsync<Exception>(() => inbox.ReceiveAsync(TimeSpan.FromSeconds(3)));
    }
}

/// <summary>`pretrain local --tls`: a whole job with both planes over mutual TLS.</summary>
public sealed class TlsJobTests
{
    [Fact]
    public async Task A_job_runs_with_TLS_on_both_planes()
    {
        var root = Directory.CreateTempSubdirectory("pretrain-tls-job-").FullName;
        try
        {
            string recipe = Pretrain.Tests.Elastic.ChaosRun.TinyRecipe(root, 20);
            string run = Path.Combine(root, "run");
            var (code, output) = await CliProcess.RunAsync(TimeSpan.FromMinutes(4), "local", "--recipe", recipe, "--workers", "2", "--run-dir", run,
                "--tls", "--verbose", "--metrics-port", "-1", "--worker-metrics-port", "-1");

            Assert.True(code == 0, output);
            Assert.Contains("TLS on both planes", output);
            Assert.True(File.Exists(Path.Combine(run, "tls", "ca.crt")));
            var summary = Pretrain.Coordinator.Summary.RunSummary.Read(Path.Combine(run, "summary.json"));
            Assert.Equal(("completed", 20L), (summary.Status, summary.Steps));
            Assert.Single(summary.ReplicaChecksums.Values.Distinct());
            string workerLog = File.ReadAllText(Path.Combine(run, "logs", "worker-0.log"));
            Assert.Contains("akka.ssl.tcp://", workerLog);
            Assert.Contains("ring connected over TLS", workerLog);
        }
        finally
        {
            try { Directory.Delete(root, recursive: true); } catch (IOException) { }
        }
    }
}
