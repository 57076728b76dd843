using System.Text.RegularExpressions;
using Pretrain.Coordinator.Summary;
using Pretrain.Shared.Messages;
using Pretrain.Tests.Infrastructure;

namespace Pretrain.Tests.Elastic;

/// <summary>
/// A job on "hosts" of the namespace harness: the coordinator on host <c>coord</c>, worker wN on host
/// <c>wN</c> (or where the test puts it), each host with its own address; workers find the coordinator by its
/// name. A test kills, freezes and cuts off hosts, and starts processes on them again with the same arguments.
/// </summary>
public sealed partial class MultiHostRun : IDisposable
{
    public const string CoordinatorHost = "coord";
    const int Port = 4053;
    static readonly IReadOnlyDictionary<string, string> NoEnvironment = new Dictionary<string, string>();
    readonly string[] _coordinatorArgs;
    readonly List<CliProcess> _coordinators = [];
    readonly Dictionary<string, CliProcess> _workers = [];
    readonly IReadOnlyList<string> _hosts;   // worker i's host

    MultiHostRun(NetnsCluster cluster, string directory, string recipe, IReadOnlyList<string> hosts)
    {
        Cluster = cluster;
        Directory = directory;
        _hosts = hosts;
        int workers = hosts.Count;
        WorkerIds = [.. Enumerable.Range(0, workers).Select(i => $"w{i}")];
        _coordinatorArgs = ["coordinator", "--recipe", recipe, "--workers", workers.ToString(), "--run-dir", directory,
            "--host", cluster.Address(CoordinatorHost), "--public-host", CoordinatorHost, "--port", Port.ToString(),
            "--metrics-port", "-1", "--timeout", "5"];
    }

    /// <param name="hostOf">The host of worker i (default wi, a host each); several workers may share one.</param>
    public static MultiHostRun Start(string directory, string recipe, int workers, Func<int, string>? hostOf = null)
    {
        string[] hosts = [.. Enumerable.Range(0, workers).Select(i => hostOf?.Invoke(i) ?? $"w{i}")];
        var cluster = NetnsCluster.Create([CoordinatorHost, .. hosts.Distinct()]);
        var run = new MultiHostRun(cluster, directory, recipe, hosts);
        // The coordinator would make the run directory's secret itself; made first, the workers need not wait for it.
        Pretrain.Shared.Security.JobSecret.CreateOrLoad(Path.Combine(directory, Pretrain.Shared.Security.JobSecret.FileName));
        run.StartCoordinator();
        foreach (var id in run.WorkerIds) run.StartWorker(id);
        return run;
    }

    public NetnsCluster Cluster { get; }
    public string Directory { get; }
    public IReadOnlyList<string> WorkerIds { get; }
    public string JournalPath => Path.Combine(Directory, "journal.db");
    public RunSummary Summary => RunSummary.Read(Path.Combine(Directory, "summary.json"));
    public CliProcess Coordinator => _coordinators[^1];
    public CliProcess Worker(string id) => _workers[id];

    public CliProcess StartCoordinator()
    {
        var process = Cluster.Start(CoordinatorHost, NoEnvironment, _coordinatorArgs);
        _coordinators.Add(process);
        return process;
    }

    /// <summary>Starts worker <paramref name="id"/> on its host (again: a new process under the same id, which joins as a newcomer).</summary>
    public CliProcess StartWorker(string id)
    {
        string host = _hosts[WorkerIds.ToList().IndexOf(id)];
        var process = Cluster.Start(host, NoEnvironment, "worker", "--coordinator", $"{CoordinatorHost}:{Port}", "--host", Cluster.Address(host),
            "--worker-id", id, "--threads", "1", "--metrics-port", "-1", "--timeout", "5", "--verbose",
            "--secret-file", Path.Combine(Directory, Pretrain.Shared.Security.JobSecret.FileName));
        _workers[id] = process;
        return process;
    }

    /// <summary>
    /// Waits until rank 0 has published the checkpoint of <paramref name="step"/> or a later one (with checkpoint.keep a
    /// fast run may prune step's own before a poll sees it).
    /// </summary>
    public async Task WaitForCheckpointAsync(long step, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        string checkpoints = Path.Combine(Directory, "checkpoints");
        while (!ChaosRun.Published(checkpoints).Any(s => s >= step))
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"no checkpoint {step} within {timeout}:\n{Output}");
            await Task.Delay(50);
        }
    }

    /// <summary>The journal's events so far (read-only; the coordinator may be writing).</summary>
    public List<IPretrainMessage> Journal()
    {
        try { return File.Exists(JournalPath) ? SqliteJournal.Read(JournalPath) : []; }
        catch (Microsoft.Data.Sqlite.SqliteException e) when (e.Message.Contains("no such table", StringComparison.Ordinal)) { return []; }   // not written yet
    }

    /// <summary>
    /// Waits until the newest generation has <paramref name="worldSize"/> ranks and has committed a step
    /// journaled after <paramref name="sinceUnixMs"/>: the job is whole again and training.
    /// </summary>
    public async Task WaitUntilTrainingAsync(int worldSize, long sinceUnixMs, TimeSpan timeout, Func<string> context)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            var events = Journal();
            if (events.OfType<GenerationStarted>().LastOrDefault() is { } g && g.Ranks.Count == worldSize
                && events.OfType<StepCommitted>().Any(s => s.Generation == g.Generation && s.AtUnixMs > sinceUnixMs))
                return;
            if (events.OfType<JobCompleted>().Any() || events.OfType<JobFailed>().Any())
                throw new InvalidOperationException($"the job ended while the test waited for it to train on {worldSize} workers ({context()}):\n{Output}");
            if (DateTime.UtcNow > deadline)
                throw new TimeoutException($"the job was not training on {worldSize} workers within {timeout} ({context()}):\n{Output}");
            await Task.Delay(250);
        }
    }

    /// <summary>The worker holding rank 0 of the newest generation.</summary>
    public string RankZero() => Journal().OfType<GenerationStarted>().Last().Ranks[0].WorkerId;

    /// <summary>How many times generations were announced in the coordinators' output (for messages only).</summary>
    public int GenerationNotices => _coordinators.Sum(c => GenerationLine().Count(c.Output));

    [GeneratedRegex(@"generation \d+: \d+ worker\(s\)")]
    private static partial Regex GenerationLine();

    public string Output => string.Join("\n", _coordinators.Select((c, i) => $"--- coordinator #{i + 1}:\n{Tail(c.Output, 40)}")
        .Concat(_workers.Select(w => $"--- {w.Key}:\n{Tail(w.Value.Output, 30)}")));

    static string Tail(string text, int lines) => string.Join("\n", text.Split('\n').TakeLast(lines));

    public void Dispose() => Cluster.Dispose();
}
