using Pretrain.Coordinator.Summary;
using Pretrain.Tests.Infrastructure;

namespace Pretrain.Tests.Cluster;

/// <summary>
/// Runs of the real `pretrain local` (coordinator in-process, worker processes on loopback), each made
/// once per test class and shared by the tests that compare them — a run takes 10-20 s on 2 cores.
/// </summary>
public sealed class LocalRuns : IDisposable
{
    public static readonly TimeSpan RunTimeout = TimeSpan.FromMinutes(4);
    readonly string _root = Directory.CreateTempSubdirectory("pretrain-runs-").FullName;
    readonly Dictionary<string, Task<Run>> _runs = [];
    readonly Lock _gate = new();

    public sealed record Run(string Directory, int ExitCode, string Output)
    {
        public RunSummary Summary => RunSummary.Read(Path.Combine(Directory, "summary.json"));
        public string Checkpoint(long step) => Path.Combine(Directory, "checkpoints", $"step-{step:D8}");
    }

    /// <summary>The run named <paramref name="name"/>, started on first use with the given arguments.</summary>
    public Task<Run> Get(string name, params string[] args)
    {
        lock (_gate)
        {
            if (!_runs.TryGetValue(name, out var run)) _runs[name] = run = Start(Path.Combine(_root, name), args);
            return run;
        }
    }

    /// <summary>Runs `pretrain local` in <paramref name="directory"/> (created or reused) and waits for it.</summary>
    public static async Task<Run> Start(string directory, params string[] args)
    {
        string[] all = ["local", "--run-dir", directory, "--metrics-port", "-1", "--worker-metrics-port", "-1", .. args];
        var (code, output) = await CliProcess.RunAsync(RunTimeout, all);
        return new Run(directory, code, output);
    }

    public static string TinyRecipe => RepoPaths.Recipe("gpt-kjv-tiny.yaml");

    public string NewDirectory(string name) => Path.Combine(_root, name + "-" + Guid.NewGuid().ToString("N")[..8]);

    public void Dispose()
    {
        try { Directory.Delete(_root, recursive: true); } catch (IOException) { }
    }
}
