using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text.RegularExpressions;

namespace Pretrain.Tests.Infrastructure;

/// <summary>
/// Several hosts on this one machine, each a Linux network namespace with its own loopback, an eth0
/// holding 10.X.Y.(index+2)/24 and an /etc/hosts naming every host; all eth0s are cabled into one bridge
/// that lives in a hub namespace of its own, so nothing is added to the root namespace. A test starts the
/// real CLI on a host, kills, freezes or cuts off that host, and disposes the lot (also when it fails:
/// <c>using var cluster = NetnsCluster.Create("coordinator", "w1", "w2");</c>).
/// </summary>
/// <remarks>
/// The recipe, per host (tried by hand, see scripts/netns-cluster.sh for the same in bash):
/// <c>ip netns add P-host; ip -n P-host link set lo up;
/// ip -n P-host link add eth0 type veth peer name Pb{i} netns P-hub; ip -n P-host addr add 10.X.Y.{i+2}/24 dev eth0;
/// ip -n P-host link set eth0 up; ip -n P-hub link set Pb{i} master br0 up</c>.
/// Creating the veth inside the host namespace with its peer named straight into the hub means neither end
/// ever exists in the root namespace, not even for a moment. The namespaces have no default route: on this
/// machine the root namespace's route leads to a gateway that accepts every TCP connect, and a host must
/// reach only its peers. Processes in a namespace share the machine's pids, hostname and files; only the
/// network (and, through <c>ip netns exec</c>'s bind mount, /etc/hosts) differs.
/// </remarks>
public sealed partial class NetnsCluster : IDisposable
{
    /// <summary>Namespaces of this harness are "pt" + 6 hex + "-name"; scripts/netns-cluster.sh uses "ps", so RemoveStale leaves its clusters alone.</summary>
    const string HarnessPrefix = "pt";
    static readonly Regex OurNamespace = new(@"^(pt[0-9a-f]{6})-[a-z0-9-]+$", RegexOptions.Compiled);
    static readonly Regex HostName = new(@"^[a-z][a-z0-9-]{0,30}$", RegexOptions.Compiled);   // a DNS label, and short enough for a namespace name
    const string HubName = "hub";
    const string EtcNetns = "/etc/netns";
    // Not /etc/netns/NS/owner: ip netns exec bind-mounts every file of /etc/netns/NS over /etc/NAME and
    // prints "Bind ... failed" on stderr (into the CLI's output) for each one /etc lacks.
    const string OwnerDirectory = "/run/pretrain-netns";
    static readonly TimeSpan CommandTimeout = TimeSpan.FromSeconds(10);
    static readonly Lazy<string?> Probe = new(ProbeNamespaces);

    /// <summary>iproute2's ip (in /usr/sbin on Debian, which a non-login PATH may lack).</summary>
    internal static string IpTool { get; } = new[] { "/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip" }.FirstOrDefault(p => File.Exists(p)) ?? "ip";

    sealed record Host(string Name, int Index, string Namespace, string Address, string HubLink);

    readonly string _prefix, _hub;
    readonly List<Host> _hosts = [];
    readonly List<string> _madeNamespaces = [];   // in creation order: what Dispose deletes, also after a half-made Create
    readonly List<(Host Host, CliProcess Process)> _started = [];
    readonly Dictionary<string, List<string>> _names = [];   // host → names added to it
    readonly Lock _gate = new();
    bool _disposed;

    NetnsCluster(string prefix, IReadOnlyList<string> names)
    {
        _prefix = prefix;
        _hub = $"{prefix}-{HubName}";
        string subnet = Subnet(prefix);
        for (int i = 0; i < names.Count; i++)
            _hosts.Add(new Host(names[i], i, $"{prefix}-{names[i]}", $"{subnet}.{i + 2}", $"{prefix}b{i}"));   // "pt1a2b3cb12": 11 of IFNAMSIZ's 15
    }

    /// <summary>Why the harness cannot run here, or null when it can (probed once per test process).</summary>
    public static string? Unavailable() => Probe.Value;

    /// <summary>A bridge and one namespace per host name (lower-case DNS labels, not "hub"), each host's address in every host's /etc/hosts.</summary>
    public static NetnsCluster Create(params string[] hostNames)
    {
        if (Unavailable() is { } reason) throw new InvalidOperationException("network namespaces are unavailable: " + reason);
        if (hostNames.Length is 0 or > 200) throw new ArgumentException("between 1 and 200 host names", nameof(hostNames));
        foreach (string name in hostNames)
            if (!HostName.IsMatch(name) || name == HubName) throw new ArgumentException($"host name '{name}' must match {HostName} and not be '{HubName}'", nameof(hostNames));
        if (hostNames.Distinct().Count() != hostNames.Length) throw new ArgumentException("host names must differ: " + string.Join(' ', hostNames), nameof(hostNames));

        RemoveStale();
        var cluster = new NetnsCluster(NewPrefix(HarnessPrefix), hostNames);
        try
        {
            cluster.Build();
            return cluster;
        }
        catch (Exception e)
        {
            try { cluster.Dispose(); }
            catch (Exception cleanup) { throw new AggregateException("creating the cluster failed, and so did removing what it had made", e, cleanup); }
            throw;
        }
    }

    void Build()
    {
        WriteOwner(_prefix);   // first, so that another test process's RemoveStale never sees our namespaces ownerless
        AddNamespace(_hub);
        Ip("-n", _hub, "link", "add", "br0", "type", "bridge");   // STP off (the default): a port forwards as soon as it is up
        Ip("-n", _hub, "link", "set", "br0", "up");
        foreach (var h in _hosts)
        {
            AddNamespace(h.Namespace);
            Ip("-n", h.Namespace, "link", "set", "lo", "up");
            Ip("-n", h.Namespace, "link", "add", "eth0", "type", "veth", "peer", "name", h.HubLink, "netns", _hub);
            Ip("-n", h.Namespace, "addr", "add", h.Address + "/24", "dev", "eth0");
            Ip("-n", h.Namespace, "link", "set", "eth0", "up");
            Ip("-n", _hub, "link", "set", h.HubLink, "master", "br0", "up");
            Directory.CreateDirectory(Path.Combine(EtcNetns, h.Namespace));
        }
        WriteHosts();
    }

    /// <summary>Every host's /etc/hosts: each host's address with its name and the names added to it.</summary>
    void WriteHosts()
    {
        string hosts;
        lock (_gate)
            hosts = "127.0.0.1 localhost\n" + string.Concat(_hosts.Select(h =>
                $"{h.Address} {string.Join(' ', (_names.TryGetValue(h.Name, out var more) ? more : []).Append(h.Name))}\n"));
        foreach (var h in _hosts)
            File.WriteAllText(Path.Combine(EtcNetns, h.Namespace, "hosts"), hosts);   // in place: bind mounts of running processes see it too
    }

    /// <summary>More names for <paramref name="host"/> on every host (a Service's name, a pod's DNS name), first ones first.</summary>
    public void AddNames(string host, params string[] names)
    {
        HostOf(host);
        lock (_gate)
        {
            if (!_names.TryGetValue(host, out var list)) _names[host] = list = [];
            list.AddRange(names);
        }
        WriteHosts();
    }

    void AddNamespace(string name)
    {
        Ip("netns", "add", name);
        lock (_gate) _madeNamespaces.Add(name);
    }

    public IReadOnlyList<string> Hosts => [.. _hosts.Select(h => h.Name)];

    /// <summary>The host's eth0 address, e.g. 10.37.201.2 (its name resolves to it on every host).</summary>
    public string Address(string host) => HostOf(host).Address;

    /// <summary>The host's network namespace, for <c>ip netns exec</c> or <c>ip -n</c>.</summary>
    public string Namespace(string host) => HostOf(host).Namespace;

    /// <summary>Every namespace this cluster made, the hub included (what Dispose removes).</summary>
    internal IReadOnlyList<string> Namespaces { get { lock (_gate) return [.. _madeNamespaces]; } }

    /// <summary>The real CLI on <paramref name="host"/>; the cluster kills it when it is disposed.</summary>
    public CliProcess Start(string host, IReadOnlyDictionary<string, string> environment, params string[] args) =>
        Track(HostOf(host), h => CliProcess.StartIn(h.Namespace, environment, args));

    /// <summary>Any program on <paramref name="host"/> (the harness's own tests run perl and bash).</summary>
    internal CliProcess StartCommand(string host, string fileName, params string[] args) =>
        StartCommand(host, fileName, new Dictionary<string, string>(), args);

    /// <summary>Any program on <paramref name="host"/> with extra environment variables; the cluster kills it when it is disposed.</summary>
    public CliProcess StartCommand(string host, string fileName, IReadOnlyDictionary<string, string> environment, params string[] args) =>
        Track(HostOf(host), h => CliProcess.StartCommandIn(h.Namespace, fileName, environment, args));

    CliProcess Track(Host host, Func<Host, CliProcess> start)
    {
        lock (_gate)   // under the lock, so a concurrent Dispose cannot miss a process
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var process = start(host);
            _started.Add((host, process));
            return process;
        }
    }

    /// <summary>
    /// SIGKILL to every process on the host, like a machine losing power, and waits until the ones started
    /// here have gone. "Every process" is those started here and whatever they started (all pids in the
    /// namespace). Exited processes are skipped, so it is safe to call twice.
    /// </summary>
    public void Kill(string host)
    {
        var h = HostOf(host);
        Signal(h, SigKill);
        foreach (var p in StartedOn(h))
            if (!p.KillTree(CommandTimeout)) throw new TimeoutException($"a process on {host} survived SIGKILL for {CommandTimeout}:\n{p.Output}");
    }

    /// <summary>
    /// <paramref name="signal"/> to one process started on a host (a pod's container, say), not to the whole host:
    /// SIGTERM is what the kubelet sends to stop a pod.
    /// </summary>
    public static void Signal(CliProcess process, int signal)
    {
        if (kill(process.Id, signal) != 0) throw new InvalidOperationException($"kill({process.Id}, {signal}) failed: errno {Marshal.GetLastPInvokeError()}");
    }

    public const int SigTerm = 15;

    /// <summary>SIGSTOP to every process on the host: a host that hangs (long GC pause, frozen VM) but keeps its sockets open.</summary>
    public void Stop(string host) => Signal(HostOf(host), SigStop);

    /// <summary>SIGCONT to every process on the host, after <see cref="Stop"/>.</summary>
    public void Continue(string host) => Signal(HostOf(host), SigCont);

    /// <summary>
    /// Cuts the host off: its cable's hub end goes down, so the host sees carrier lost (eth0 NO-CARRIER) and
    /// its peers' packets to it are dropped at the bridge (their connects hang until their own timeouts).
    /// Connections stay open on both sides until TCP gives up or the partition heals.
    /// </summary>
    public void Partition(string host) => Ip("-n", _hub, "link", "set", HostOf(host).HubLink, "down");

    /// <summary>Plugs the host back in after <see cref="Partition"/>.</summary>
    public void Heal(string host) => Ip("-n", _hub, "link", "set", HostOf(host).HubLink, "up");

    Host HostOf(string name)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return _hosts.Find(h => h.Name == name) ?? throw new ArgumentException($"no host '{name}' in this cluster ({string.Join(", ", _hosts.Select(h => h.Name))})", nameof(name));
    }

    CliProcess[] StartedOn(Host host)
    {
        lock (_gate) return [.. _started.Where(s => s.Host == host).Select(s => s.Process)];
    }

    void Signal(Host host, int signal)
    {
        // The namespace's pids are the started processes (ip netns exec execs in place) and all they started.
        // The started ones are added while they run: one only just started may still be `ip` before its
        // setns. A pid that exits meanwhile makes kill fail with ESRCH, which is what we wanted anyway.
        var live = StartedOn(host).Select(LivePid).OfType<int>();
        foreach (int pid in PidsIn(host.Namespace).Union(live)) kill(pid, signal);
    }

    static int? LivePid(CliProcess process)
    {
        try { return process.HasExited ? null : process.Id; }
        catch (InvalidOperationException) { return null; }   // disposed by its test
    }

    /// <summary>Kills everything, deletes every namespace and /etc/netns directory this cluster made. Idempotent.</summary>
    public void Dispose()
    {
        (Host Host, CliProcess Process)[] started;
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
            started = [.. _started];
        }
        var failures = new List<string>();
        foreach (string ns in Namespaces.Reverse()) Try(failures, () => KillAllIn(ns));
        foreach (var (host, process) in started)
        {
            if (!process.KillTree(CommandTimeout)) failures.Add($"a process on {host.Name} survived SIGKILL");
            process.Dispose();
        }
        foreach (string ns in Namespaces.Reverse()) Try(failures, () => Ip("netns", "delete", ns));   // takes the veth pairs with it
        foreach (var h in _hosts) Try(failures, () => DeleteDirectory(Path.Combine(EtcNetns, h.Namespace)));
        Try(failures, () => File.Delete(OwnerFile(_prefix)));
        if (failures.Count > 0) throw new InvalidOperationException($"network namespace cluster {_prefix} was not fully removed:\n" + string.Join('\n', failures));
    }

    /// <summary>
    /// Removes what crashed test processes left behind: every "pt??????-*" namespace (with its processes) and
    /// /etc/netns directory whose cluster's owner (pid and start time, in /run/pretrain-netns) has gone.
    /// Best effort; a cluster of a live process is never touched.
    /// </summary>
    public static void RemoveStale()
    {
        var namespaces = Ip("netns", "list").Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Split(' ')[0]);
        var directories = Directory.Exists(EtcNetns) ? Directory.EnumerateDirectories(EtcNetns).Select(d => Path.GetFileName(d)) : Enumerable.Empty<string>();
        var owners = Directory.Exists(OwnerDirectory) ? Directory.EnumerateFiles(OwnerDirectory).Select(f => Path.GetFileName(f)) : Enumerable.Empty<string>();
        var namespacesByPrefix = namespaces.Select(n => (Name: n, Match: OurNamespace.Match(n))).Where(m => m.Match.Success)
            .ToLookup(m => m.Match.Groups[1].Value, m => m.Name);
        var directoriesByPrefix = directories.Select(n => (Name: n, Match: OurNamespace.Match(n))).Where(m => m.Match.Success)
            .ToLookup(m => m.Match.Groups[1].Value, m => m.Name);
        var prefixes = namespacesByPrefix.Select(g => g.Key).Concat(directoriesByPrefix.Select(g => g.Key))
            .Concat(owners.Where(o => Regex.IsMatch(o, "^pt[0-9a-f]{6}$"))).Distinct();
        var ignored = new List<string>();
        foreach (string prefix in prefixes.Where(p => !OwnerAlive(p)))
        {
            foreach (string ns in namespacesByPrefix[prefix])
            {
                Try(ignored, () => KillAllIn(ns));
                Try(ignored, () => Ip("netns", "delete", ns));
            }
            foreach (string dir in directoriesByPrefix[prefix]) Try(ignored, () => DeleteDirectory(Path.Combine(EtcNetns, dir)));
            Try(ignored, () => File.Delete(OwnerFile(prefix)));
        }
    }

    /// <summary>
    /// SIGCONT then SIGKILL to every pid in the namespace until none is left. SIGKILL ends a stopped process
    /// too; the SIGCONT is cheap insurance for a frozen host whose processes must also be seen to exit.
    /// </summary>
    static void KillAllIn(string ns)
    {
        var deadline = DateTime.UtcNow + CommandTimeout;
        for (int[] pids = PidsIn(ns); pids.Length > 0; pids = PidsIn(ns))
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"processes {string.Join(' ', pids)} still in namespace {ns} after SIGKILL");
            foreach (int pid in pids) kill(pid, SigCont);
            foreach (int pid in pids) kill(pid, SigKill);
            Thread.Sleep(20);   // dead children of this process are reaped by .NET, of a dead test process by init
        }
    }

    static int[] PidsIn(string ns) =>
        [.. Ip("netns", "pids", ns).Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(int.Parse)];

    // ----- owners: which process made a cluster (pid plus start time, so a reused pid is not mistaken for it)

    static string OwnerFile(string prefix) => Path.Combine(OwnerDirectory, prefix);

    static void WriteOwner(string prefix)
    {
        Directory.CreateDirectory(OwnerDirectory);
        File.WriteAllText(OwnerFile(prefix), $"{Environment.ProcessId} {StartTime(Environment.ProcessId)}\n");
    }

    static bool OwnerAlive(string prefix)
    {
        try
        {
            string[] owner = File.ReadAllText(OwnerFile(prefix)).Split(' ', StringSplitOptions.TrimEntries);
            return StartTime(int.Parse(owner[0])) == owner[1];
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or IndexOutOfRangeException)
        {
            return false;   // no owner file (or an unreadable one): nobody owns it
        }
    }

    /// <summary>Field 22 of /proc/PID/stat (clock ticks after boot); the fields start after the last ')' as comm may hold spaces.</summary>
    static string StartTime(int pid)
    {
        string stat = File.ReadAllText($"/proc/{pid}/stat");
        return stat[(stat.LastIndexOf(')') + 2)..].Split(' ')[19];
    }

    // ----- helpers

    static string? ProbeNamespaces()
    {
        if (!OperatingSystem.IsLinux()) return "network namespaces need Linux";
        if (!File.Exists(IpTool)) return "iproute2's ip is not installed (apt-get install iproute2)";
        string prefix = NewPrefix(HarnessPrefix), probe = prefix + "-probe";
        try
        {
            WriteOwner(prefix);
            Directory.CreateDirectory(EtcNetns);
            Ip("netns", "add", probe);
            Ip("netns", "exec", probe, "true");   // also needs CAP_SYS_ADMIN, for the mount namespace ip sets up
            return null;
        }
        catch (Exception e)
        {
            return $"ip netns does not work here (uid {geteuid()}; needs root or CAP_NET_ADMIN + CAP_SYS_ADMIN): {e.Message}";
        }
        finally
        {
            try { Ip("netns", "delete", probe); } catch (Exception e) when (e is InvalidOperationException or TimeoutException) { }   // never made
            try { File.Delete(OwnerFile(prefix)); } catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        }
    }

    static string NewPrefix(string kind) => kind + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(3));

    /// <summary>10.X.Y from the prefix's hex digits, so two clusters alive at once use different subnets too.</summary>
    static string Subnet(string prefix) => $"10.{Convert.ToByte(prefix[2..4], 16)}.{Convert.ToByte(prefix[4..6], 16)}";

    static void DeleteDirectory(string path)
    {
        if (Directory.Exists(path)) Directory.Delete(path, recursive: true);
    }

    static void Try(List<string> failures, Action action)
    {
        try { action(); }
        catch (Exception e) { failures.Add(e.Message); }
    }

    /// <summary>Runs ip with a bounded wait; fails naming the command and its stderr.</summary>
    internal static string Ip(params string[] args)
    {
        var info = new ProcessStartInfo(IpTool) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in args) info.ArgumentList.Add(a);
        string command = "ip " + string.Join(' ', args);
        using var process = Process.Start(info) ?? throw new InvalidOperationException($"`{command}` could not be started");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(CommandTimeout) || !Task.WaitAll(new Task[] { stdout, stderr }, CommandTimeout))
        {
            try { process.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
            throw new TimeoutException($"`{command}` did not finish within {CommandTimeout.TotalSeconds} s");
        }
        if (process.ExitCode != 0) throw new InvalidOperationException($"`{command}` exited with {process.ExitCode}: {stderr.Result.Trim()}");
        return stdout.Result;
    }

    public const int SigKill = 9, SigStop = 19, SigCont = 18;

    [LibraryImport("libc", SetLastError = true)]
    private static partial int kill(int pid, int signal);

    [LibraryImport("libc")]
    private static partial uint geteuid();
}
