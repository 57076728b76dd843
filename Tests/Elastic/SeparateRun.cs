using System.Text.RegularExpressions;
using Pretrain.Coordinator.Summary;
using Pretrain.Tests.Infrastructure;

namespace Pretrain.Tests.Elastic;

/// <summary>
/// A job run as a user runs it across machines: `pretrain coordinator` and each `pretrain worker` as
/// separate processes (no launcher in between), so a test can SIGKILL and restart the coordinator while
/// the workers go on. Every process is killed when the test ends.
/// </summary>
public sealed class SeparateRun : IDisposable
{
    readonly string[] _coordinatorArgs, _workerArgs;
    readonly List<CliProcess> _coordinators = [];
    readonly Dictionary<string, CliProcess> _workers = [];

    SeparateRun(string directory, string recipe, int workers, string[] coordinatorArgs, string[] workerArgs)
    {
        Directory = directory;
        Port = FreePorts.Next();
        _coordinatorArgs = ["coordinator", "--recipe", recipe, "--workers", workers.ToString(), "--run-dir", directory,
            "--port", Port.ToString(), "--metrics-port", "-1", .. coordinatorArgs];
        _workerArgs = workerArgs;
    }

    /// <summary>Starts the coordinator and <paramref name="workers"/> workers named w0, w1, ….</summary>
    /// <param name="perWorker">Arguments of worker i beyond <paramref name="workerArgs"/> (e.g. its --data-port).</param>
    public static SeparateRun Start(string directory, string recipe, int workers, string[]? coordinatorArgs = null, string[]? workerArgs = null,
        Func<int, string[]>? perWorker = null)
    {
        var run = new SeparateRun(directory, recipe, workers, coordinatorArgs ?? ["--timeout", "5"], workerArgs ?? ["--timeout", "5"]);
        run.StartCoordinator();
        // Workers start once the coordinator listens: a test giving them a short --coordinator-timeout must not see
        // it expire while a loaded machine is still starting the coordinator (seen in CI: exit 5 before the test began).
        run.Coordinator.WaitForOutputAsync(o => o.Contains("coordinator at ", StringComparison.Ordinal), TimeSpan.FromMinutes(1)).GetAwaiter().GetResult();
        for (int i = 0; i < workers; i++) run.StartWorker($"w{i}", perWorker?.Invoke(i) ?? []);
        return run;
    }

    public string Directory { get; }
    public int Port { get; }
    public RunSummary Summary => RunSummary.Read(Path.Combine(Directory, "summary.json"));

    /// <summary>The job secret the coordinator made in the run directory (it is started first).</summary>
    public string SecretFile => Path.Combine(Directory, Pretrain.Shared.Security.JobSecret.FileName);

    /// <summary>The newest coordinator process.</summary>
    public CliProcess Coordinator => _coordinators[^1];

    public CliProcess Worker(string id) => _workers[id];

    /// <summary>Starts a coordinator with the same arguments as the first (a restart on the same run directory and journal).</summary>
    public CliProcess StartCoordinator()
    {
        var process = CliProcess.Start(_coordinatorArgs);
        _coordinators.Add(process);
        return process;
    }

    public CliProcess StartWorker(string id, params string[] extra)
    {
        var process = CliProcess.Start(["worker", "--coordinator", $"127.0.0.1:{Port}", "--worker-id", id, "--threads", "1", "--secret-file", SecretFile,
            "--metrics-port", "-1", "--verbose", .. _workerArgs, .. extra]);
        _workers[id] = process;
        return process;
    }

    /// <summary>
    /// Waits until rank 0 has published the checkpoint of <paramref name="step"/> or a later one (retention may prune
    /// step's own before a poll sees it). The coordinator may be down meanwhile: workers checkpoint without it.
    /// </summary>
    public async Task WaitForCheckpointAsync(long step, TimeSpan? timeout = null)
    {
        var limit = timeout ?? TimeSpan.FromMinutes(2);
        var deadline = DateTime.UtcNow + limit;
        string checkpoints = Path.Combine(Directory, "checkpoints");
        while (!ChaosRun.Published(checkpoints).Any(s => s >= step))
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"no checkpoint of step {step} or later within {limit}:\n{Output}");
            await Task.Delay(20);
        }
    }

    /// <summary>The step a worker said it held when it registered again with a restarted coordinator, or -1.</summary>
    public long HeldAtReregistration(string id) =>
        Regex.Matches(_workers[id].Output, @"registered again as \S+ with .* holding step (-?\d+)") is { Count: > 0 } m
            ? long.Parse(m[0].Groups[1].Value) : -1;

    /// <summary>Every process's output, for a failing assertion's message.</summary>
    public string Output => string.Join("\n", _coordinators.Select((c, i) => $"--- coordinator #{i + 1}:\n{c.Output}")
        .Concat(_workers.Select(w => $"--- {w.Key}:\n{Tail(w.Value.Output)}")));

    static string Tail(string text, int lines = 60) => string.Join("\n", text.Split('\n').TakeLast(lines));

    public void Dispose()
    {
        foreach (var c in _coordinators) c.Dispose();
        foreach (var w in _workers.Values) w.Dispose();
    }
}
