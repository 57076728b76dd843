using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using Xunit;

namespace Pretrain.Tests.Infrastructure;

/// <summary>
/// The network namespace harness itself, with tools every Debian machine has: the listener is a perl
/// one-liner (perl-base is Essential: yes, IO::Socket::INET is in it; there is no nc, socat or ping
/// here), clients are bash's /dev/tcp bounded by coreutils' timeout.
/// </summary>
public sealed class NetnsClusterTests
{
    static readonly TimeSpan Wait = TimeSpan.FromSeconds(10);
    const int Port = 7000;   // any port: every namespace starts empty

    /// <summary>Accepts forever on ADDRESS:PORT and greets each peer with "hello from NAME".</summary>
    const string Listener = """
        $| = 1;
        my $server = IO::Socket::INET->new(LocalAddr => $ARGV[0], LocalPort => $ARGV[1], Listen => 16, ReuseAddr => 1) or die "listen: $!\n";
        print "listening\n";
        while (my $peer = $server->accept) { print $peer "hello from $ARGV[2]\n"; close $peer; }
        """;

    static async Task<CliProcess> ListenAsync(NetnsCluster cluster, string host, string address)
    {
        var listener = cluster.StartCommand(host, "perl", "-MIO::Socket::INET", "-e", Listener, address, Port.ToString(), host);
        await listener.WaitForOutputAsync(o => o.Contains("listening", StringComparison.Ordinal), Wait);
        return listener;
    }

    /// <summary>Connects from <paramref name="from"/> to target:Port and reads the greeting; timeout exits 124 when the connect hangs.</summary>
    static async Task<(int ExitCode, string Output)> ConnectAsync(NetnsCluster cluster, string from, string target, int seconds = 3)
    {
        using var client = cluster.StartCommand(from, "timeout", seconds.ToString(), "bash", "-c", $"exec 3<>/dev/tcp/{target}/{Port} && cat <&3");
        int code = await client.WaitAsync(TimeSpan.FromSeconds(seconds + 5));
        return (code, client.Output);
    }

    [NetnsFact]
    public async Task A_host_reaches_a_listener_on_another_host_by_its_name()
    {
        using var cluster = NetnsCluster.Create("alpha", "beta");
        using var listener = await ListenAsync(cluster, "beta", "0.0.0.0");

        var (code, output) = await ConnectAsync(cluster, "alpha", "beta");
        Assert.True(code == 0, output);
        Assert.Contains("hello from beta", output);
        Assert.Matches(@"^10\.\d+\.\d+\.3$", cluster.Address("beta"));   // the second host: index + 2
        Assert.Contains("hello from beta", (await ConnectAsync(cluster, "alpha", cluster.Address("beta"))).Output);
    }

    [NetnsFact]
    public async Task Hosts_do_not_share_their_loopback()
    {
        using var cluster = NetnsCluster.Create("alpha", "beta");
        using var listener = await ListenAsync(cluster, "beta", "127.0.0.1");

        var onBeta = await ConnectAsync(cluster, "beta", "127.0.0.1");
        Assert.True(onBeta.ExitCode == 0, onBeta.Output);
        var onAlpha = await ConnectAsync(cluster, "alpha", "127.0.0.1");
        Assert.NotEqual(0, onAlpha.ExitCode);
        Assert.Contains("Connection refused", onAlpha.Output);   // alpha's own, empty loopback answers at once
        Assert.NotEqual(0, (await ConnectAsync(cluster, "alpha", "beta")).ExitCode);   // nor is it on beta's eth0
    }

    [NetnsFact]
    public async Task A_partitioned_host_is_unreachable_until_healed_while_the_others_still_talk()
    {
        using var cluster = NetnsCluster.Create("alpha", "beta", "gamma");
        using var onBeta = await ListenAsync(cluster, "beta", "0.0.0.0");
        using var onGamma = await ListenAsync(cluster, "gamma", "0.0.0.0");
        Assert.Equal(0, (await ConnectAsync(cluster, "alpha", "beta")).ExitCode);

        cluster.Partition("beta");
        var cut = await ConnectAsync(cluster, "alpha", "beta", seconds: 2);
        // 124 is coreutils' timeout ending the command: the SYN is dropped at the bridge and the connect hangs (neither
        // refused, 1, nor failed on ARP, which takes 3 s), as a cut cable does; ConnectAsync bounds the whole at 7 s.
        Assert.True(cut.ExitCode == 124, $"exit {cut.ExitCode}, not timeout's 124:\n{cut.Output}");
        Assert.Equal(0, (await ConnectAsync(cluster, "alpha", "gamma")).ExitCode);
        using (var link = cluster.StartCommand("beta", "ip", "link", "show", "eth0"))
        {
            Assert.Equal(0, await link.WaitAsync(Wait));
            Assert.Contains("NO-CARRIER", link.Output);   // beta's own view: its cable is out
        }

        cluster.Heal("beta");
        var deadline = DateTime.UtcNow + Wait;
        (int ExitCode, string Output) healed;
        while ((healed = await ConnectAsync(cluster, "alpha", "beta", seconds: 2)).ExitCode != 0 && DateTime.UtcNow < deadline)
            await Task.Delay(200);
        Assert.True(healed.ExitCode == 0, healed.Output);
        Assert.Contains("hello from beta", healed.Output);
    }

    [NetnsFact]
    public async Task Stop_continue_and_kill_reach_every_process_on_a_host_and_are_safe_after_it_exited()
    {
        using var cluster = NetnsCluster.Create("alpha", "beta");
        // A parent and the child it started: the host's signals must reach both.
        var parent = cluster.StartCommand("alpha", "bash", "-c", "sleep 600 & echo \"child $!\"; wait");
        await parent.WaitForOutputAsync(o => o.Contains("child ", StringComparison.Ordinal), Wait);
        int child = int.Parse(parent.Output.Split("child ")[1].Trim());
        Assert.Equal("bash", File.ReadAllText($"/proc/{parent.Id}/comm").Trim());   // ip netns exec exec'd in place: the pid is the command's
        using var bystander = cluster.StartCommand("beta", "sleep", "600");

        cluster.Stop("alpha");
        await Until(() => State(parent.Id) == 'T' && State(child) == 'T');
        Assert.NotEqual('T', State(bystander.Id));   // another host is untouched
        cluster.Continue("alpha");
        await Until(() => State(parent.Id) != 'T' && State(child) != 'T');

        cluster.Kill("alpha");
        Assert.True(parent.HasExited);
        await Until(() => State(child) is null or 'Z');   // an orphan stays a zombie until init reaps it
        cluster.Kill("alpha");   // nothing left: no-ops, no throw
        cluster.Stop("alpha");
        cluster.Continue("alpha");
        Assert.False(bystander.HasExited);
    }

    [NetnsFact]
    public async Task Dispose_removes_every_namespace_hosts_file_and_process_it_made()
    {
        var cluster = NetnsCluster.Create("alpha", "beta");
        try
        {
            var namespaces = cluster.Namespaces;
            Assert.Equal(3, namespaces.Count);   // the hub and two hosts
            Assert.All(namespaces, ns => Assert.Contains(ns, ListedNamespaces()));
            Assert.Contains($"{cluster.Address("beta")} beta", File.ReadAllText($"/etc/netns/{cluster.Namespace("alpha")}/hosts"));
            var sleeper = cluster.StartCommand("beta", "sleep", "600");
            int pid = sleeper.Id;
            cluster.Stop("beta");   // a frozen host must go too

            cluster.Dispose();

            Assert.Empty(ListedNamespaces().Intersect(namespaces));
            Assert.All(namespaces, ns => Assert.False(Directory.Exists("/etc/netns/" + ns), ns));
            await Until(() => State(pid) is null);   // our child: .NET reaps it
        }
        finally
        {
            cluster.Dispose();   // idempotent; cleans up when an assertion above failed
        }
    }

    [NetnsFact]
    public async Task RemoveStale_removes_an_ownerless_namespace_and_its_processes_but_not_a_live_cluster()
    {
        using var live = NetnsCluster.Create("alpha");
        string stale = $"pt{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(3))}-left";   // as a crashed test process leaves it: no owner file
        try
        {
            NetnsCluster.Ip("netns", "add", stale);
            Directory.CreateDirectory("/etc/netns/" + stale);
            File.WriteAllText($"/etc/netns/{stale}/hosts", "127.0.0.1 localhost\n");
            using var orphan = CliProcess.StartCommandIn(stale, "sleep", new Dictionary<string, string>(), "600");

            NetnsCluster.RemoveStale();

            Assert.DoesNotContain(stale, ListedNamespaces());
            Assert.False(Directory.Exists("/etc/netns/" + stale));
            await orphan.WaitAsync(Wait);   // SIGKILLed: it exits
            Assert.All(live.Namespaces, ns => Assert.Contains(ns, ListedNamespaces()));
        }
        finally
        {
            if (ListedNamespaces().Contains(stale)) NetnsCluster.Ip("netns", "delete", stale);
            if (Directory.Exists("/etc/netns/" + stale)) Directory.Delete("/etc/netns/" + stale, recursive: true);
        }
    }

    static string[] ListedNamespaces() =>
        [.. NetnsCluster.Ip("netns", "list").Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Split(' ')[0])];

    /// <summary>The state letter of /proc/PID/stat (S, R, T, Z…), or null once the pid is gone.</summary>
    static char? State(int pid)
    {
        try
        {
            string stat = File.ReadAllText($"/proc/{pid}/stat");
            return stat[stat.LastIndexOf(')') + 2];
        }
        catch (IOException) { return null; }
    }

    static async Task Until(Func<bool> condition, [CallerArgumentExpression(nameof(condition))] string what = "")
    {
        var deadline = DateTime.UtcNow + Wait;
        while (!condition())
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"`{what}` did not hold within {Wait}");
            await Task.Delay(20);
        }
    }
}
