using System.Net.Sockets;
using System.Security.Cryptography;
using Akka.Actor;
using Akka.Configuration;
using Pretrain.Shared.Cluster;
using Pretrain.Tests.Elastic;
using Pretrain.Tests.Infrastructure;
using Pretrain.Worker.Collectives;
using Xunit;

namespace Pretrain.Tests.Security;

/// <summary>The replica checksum of an unattacked run, computed once for the class.</summary>
public sealed class CleanRun : IDisposable
{
    // Long enough (about 17 s here) that a second process under a live id is still refused when its wait runs out (10 s).
    public const long Steps = 400;
    public readonly string Root = Directory.CreateTempSubdirectory("pretrain-intruder-").FullName;
    readonly Lazy<string> _checksum;

    public CleanRun() => _checksum = new(() =>
    {
        using var run = SeparateRun.Start(Path.Combine(Root, "clean"), Recipe, 2);
        Assert.True(run.Coordinator.WaitAsync(TimeSpan.FromMinutes(5)).GetAwaiter().GetResult() == 0, run.Output);
        return Assert.Single(run.Summary.ReplicaChecksums.Values.Distinct());
    });

    public string Recipe => ChaosRun.TinyRecipe(Root, Steps, checkpointEvery: 20);
    public string Checksum => _checksum.Value;

    public void Dispose()
    {
        try { Directory.Delete(Root, recursive: true); } catch (IOException) { }
    }
}

/// <summary>
/// The three ways in that issue 14 found open, tried against running jobs (real processes, real sockets): a second
/// process under a live worker's id, raw handshakes sent to the ring ports while the ring forms, and a process that
/// joins the Akka cluster with no credential; and workers with a wrong or no secret. Each intruder is refused with a
/// logged reason, and the job ends with the replica checksum of a run nobody attacked.
/// </summary>
public sealed class IntruderTests(CleanRun clean) : IClassFixture<CleanRun>
{
    static readonly TimeSpan Bound = TimeSpan.FromMinutes(5);

    [Fact]
    public async Task Control_plane_intruders_are_refused_and_the_job_ends_as_if_unattacked()
    {
        using var run = SeparateRun.Start(Path.Combine(clean.Root, "control"), clean.Recipe, 2);
        await run.WaitForCheckpointAsync(20, Bound);
        string coordinator = $"127.0.0.1:{run.Port}";
        string wrongSecret = Path.Combine(clean.Root, "wrong-secret");
        await File.WriteAllTextAsync(wrongSecret, Convert.ToBase64String(RandomNumberGenerator.GetBytes(32)));
        string[] common = ["worker", "--coordinator", coordinator, "--threads", "1", "--metrics-port", "-1", "--timeout", "5"];

        // An Akka node that joins the cluster and never registers: downed after the grace period (5 s with --timeout 5).
        using var stranger = ActorSystem.Create(ClusterHocon.SystemName, ConfigurationFactory.ParseString(ClusterHocon.Worker("127.0.0.1", run.Port)));
        var strangerRemoved = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Akka.Cluster.Cluster.Get(stranger).RegisterOnMemberRemoved(() => strangerRemoved.TrySetResult());

        using var duplicate = CliProcess.Start([.. common, "--worker-id", "w0", "--secret-file", run.SecretFile]);
        using var wrong = CliProcess.Start([.. common, "--worker-id", "w9", "--secret-file", wrongSecret]);
        using var none = CliProcess.Start([.. common, "--worker-id", "w8"]);

        Assert.True(await wrong.WaitAsync(Bound) == 2, wrong.Output);
        Assert.Contains("different secrets", wrong.Output);
        Assert.True(await none.WaitAsync(Bound) == 2, none.Output);
        Assert.Contains("no proof of the job secret", none.Output);
        Assert.Contains("pass --secret-file", none.Output);
        // It never took part: exit 4 (stopped) when its wait ran out; exit 0 when the job completed first, as a late
        // replacement pod does (nothing is left for it to do, and a Job counts its index complete).
        var duplicateExit = await duplicate.WaitAsync(Bound);
        Assert.True(duplicateExit == 4 || (duplicateExit == 0 && duplicate.Output.Contains("the job completed at step", StringComparison.Ordinal)), duplicate.Output);
        Assert.Contains("w0 is held by a live process", duplicate.Output);
        await strangerRemoved.Task.WaitAsync(Bound);

        Assert.True(await run.Coordinator.WaitAsync(Bound) == 0, run.Output);
        string log = run.Coordinator.Output;
        Assert.Matches(@"refused registration of w9 from akka\.tcp://pretrain@127\.0\.0\.1:\d+: .*different secrets", log);
        Assert.Matches(@"refused registration of w8 from akka\.tcp://pretrain@127\.0\.0\.1:\d+: .*no proof", log);
        Assert.Matches(@"refused registration of w0 from akka\.tcp://pretrain@127\.0\.0\.1:\d+: worker id w0 is held by a live process", log);
        Assert.Matches(@"downing cluster member akka\.tcp://pretrain@127\.0\.0\.1:\d+ .*did not prove the job secret", log);
        var summary = run.Summary;
        Assert.Equal(("completed", CleanRun.Steps, 2), (summary.Status, summary.Steps, summary.WorldSize));
        Assert.Equal(clean.Checksum, Assert.Single(summary.ReplicaChecksums.Values.Distinct()));
        // The secret is in no log, nor in the journal or summary.json.
        string secret = (await File.ReadAllTextAsync(run.SecretFile)).Trim();
        Assert.DoesNotContain(secret, run.Output + duplicate.Output + wrong.Output + none.Output);
        foreach (var file in new[] { "journal.db", "summary.json" })
            Assert.DoesNotContain(secret, System.Text.Encoding.Latin1.GetString(await File.ReadAllBytesAsync(Path.Combine(run.Directory, file))));
    }

    [Fact]
    public async Task Raw_handshakes_sent_while_the_ring_forms_take_no_slot_and_the_job_ends_as_if_unattacked()
    {
        int[] ports = [FreePorts.Next(), FreePorts.Next()];
        using var stop = new CancellationTokenSource();
        // Started before the workers: every attempt of the ring to form meets strangers claiming its slots.
        var attackers = Enumerable.Range(0, 4).Select(i => Task.Run(() => AttackAsync(ports[i % 2], i % 2, stop.Token))).ToArray();
        try
        {
            using var run = SeparateRun.Start(Path.Combine(clean.Root, "data"), clean.Recipe, 2, perWorker: i => ["--data-port", ports[i].ToString()]);
            Assert.True(await run.Coordinator.WaitAsync(Bound) == 0, run.Output);
            var summary = run.Summary;
            Assert.Equal(("completed", CleanRun.Steps, 1), (summary.Status, summary.Steps, summary.Generations.Count));
            Assert.Equal(clean.Checksum, Assert.Single(summary.ReplicaChecksums.Values.Distinct()));
            // Refused for what each was: garbage, a proof that did not verify, or a slot already taken by the real peer.
            Assert.True(System.Text.RegularExpressions.Regex.IsMatch(run.Worker("w0").Output + run.Worker("w1").Output,
                @"data plane rejected connection from 127\.0\.0\.1:\d+: (unauthenticated|Mismatch|BadProtocol)"), run.Output);
        }
        finally
        {
            stop.Cancel();
            await Task.WhenAll(attackers);
        }
        Assert.True(attackers.All(a => a.Result > 0), "the attackers reached the listeners");
    }

    /// <summary>
    /// Connects again and again to <paramref name="port"/> claiming to be the previous rank of <paramref name="rank"/> in
    /// generations 1-3 (what a raw handshake took before: the slot), answers the challenge with random bytes, and
    /// sometimes sends garbage instead. Returns how many connections it made.
    /// </summary>
    static async Task<int> AttackAsync(int port, int rank, CancellationToken stop)
    {
        int attempts = 0;
        var random = new Random(port);
        while (!stop.IsCancellationRequested)
        {
            try
            {
                using var client = new TcpClient();
                await client.ConnectAsync("127.0.0.1", port, stop);
                attempts++;
                var stream = client.GetStream();
                var hello = new byte[RingAuthentication.HelloSize];
                if (random.Next(4) == 0) random.NextBytes(hello);     // garbage
                else new Handshake(1 + random.Next(3), (rank + 1) % 2, rank, 2).Write(hello);
                await stream.WriteAsync(hello, stop);
                var challenge = new byte[RingAuthentication.ChallengeSize];
                await stream.ReadExactlyAsync(challenge, stop);
                await stream.WriteAsync(RandomNumberGenerator.GetBytes(RingAuthentication.ProofSize), stop);
                await stream.ReadExactlyAsync(new byte[RingAuthentication.VerdictSize], stop);
            }
            catch (Exception e) when (e is SocketException or IOException or OperationCanceledException) { }
            try { await Task.Delay(20, stop); } catch (OperationCanceledException) { }
        }
        return attempts;
    }
}
