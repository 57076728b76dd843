using System.Diagnostics;
using Pretrain.Shared.IO;
using Pretrain.Worker.Telemetry;

namespace Pretrain.Cli.Runs;

/// <summary>
/// The worker child processes of a local run: `pretrain worker …` on loopback, each logging to
/// logs/worker-N.log in the run directory, each told our pid so it exits if we die. A worker that dies
/// is started again under its name (a new incarnation, which joins the job as a newcomer) up to
/// `--max-restarts` times per run, as torchrun's `--max-restarts` — but the others never restart. With
/// `--trace FILE` each incarnation writes its own timeline (logs/worker-N.trace.json, logs/worker-N.2.trace.json
/// after a restart: no incarnation overwrites another's), and when every worker has exited they are merged
/// into FILE (<see cref="TraceMerge"/>) and removed.
/// </summary>
public sealed partial class WorkerProcesses : IAsyncDisposable
{
    readonly List<Process> _processes = [];
    readonly List<StreamWriter> _logs = [];
    readonly TaskCompletionSource<string> _firstUnexpectedExit = new(TaskCreationOptions.RunContinuationsAsynchronously);
    readonly TaskCompletionSource<string> _allGone = new(TaskCreationOptions.RunContinuationsAsynchronously);
    readonly RunConsole _console;
    readonly Lock _gate = new();
    readonly int _maxRestarts;
    readonly Dictionary<string, (string[] Args, string RunDirectory)> _commands = [];
    readonly string? _trace;                           // --trace FILE, or null
    readonly List<string> _traceParts = [];            // every incarnation's timeline, in start order
    readonly Dictionary<string, int> _incarnations = [];
    int _restarts, _running;
    volatile bool _stopping;
    string? _lastDeath;

    WorkerProcesses(RunConsole console, int maxRestarts = 0, string? trace = null) => (_console, _maxRestarts, _trace) = (console, maxRestarts, trace);

    /// <summary>Completes with a description of the first worker that exits with a non-zero code.</summary>
    public Task<string> FirstUnexpectedExit => _firstUnexpectedExit.Task;

    /// <summary>Completes when every worker has exited and none is restarting, with the last death, if any.</summary>
    public Task<string> AllGone => _allGone.Task;

    /// <summary>Raised when a worker process dies (exits non-zero): its id, pid and how it died.</summary>
    public event Action<string, int, string>? Died;

    /// <summary>Workers started again after dying.</summary>
    public int Restarts { get { lock (_gate) return _restarts; } }

    public static WorkerProcesses Start(RunOptions options, int coordinatorPort, string runDirectory, IReadOnlyList<string> credentials, RunConsole console)
    {
        var set = new WorkerProcesses(console, options.MaxRestarts, options.TracePath);
        // Workers share this machine's cores: torch threads per worker = max(1, cores / workers),
        // or they fight and every figure lies (environment.md).
        int threads = Math.Max(1, Environment.ProcessorCount / options.Workers);
        for (int i = 0; i < options.Workers; i++)
        {
            string id = $"worker-{i}";
            string[] args =
            [
                "worker", "--coordinator", $"127.0.0.1:{coordinatorPort}", "--worker-id", id, .. credentials,
                "--threads", threads.ToString(), "--parent-pid", Environment.ProcessId.ToString(),
                "--metrics-port", options.WorkerMetricsPort <= 0 ? options.WorkerMetricsPort.ToString() : (options.WorkerMetricsPort + i).ToString(),
                "--timeout", ((int)options.Timeout.TotalSeconds).ToString(),
                // The coordinator is this process: a worker that cannot reach it has nothing to wait for.
                "--coordinator-timeout", ((int)options.Timeout.TotalSeconds).ToString(),
                "--transport", options.Transport,
                .. options.Verbose ? ["--verbose"] : Array.Empty<string>(),
            ];
            set._commands[id] = (args, runDirectory);
            var process = set.Spawn(id, args, runDirectory);
            console.Info($"{id} started (pid {process.Id}, {threads} torch thread(s)), log {Path.Combine(runDirectory, "logs", id + ".log")}");
        }
        return set;
    }

    /// <summary>`pretrain prepare --workers N`: N workers on loopback that take preparation tasks.</summary>
    public static WorkerProcesses StartPreparers(int count, int coordinatorPort, string runDirectory, string secretFile, TimeSpan timeout, RunConsole console)
    {
        var set = new WorkerProcesses(console);
        for (int i = 0; i < count; i++)
        {
            string id = $"preparer-{i}";
            var process = set.Spawn(id,
            [
                "worker", "--prepare", "--coordinator", $"127.0.0.1:{coordinatorPort}", "--worker-id", id, "--secret-file", secretFile,
                "--parent-pid", Environment.ProcessId.ToString(), "--metrics-port", "-1", "--timeout", ((int)timeout.TotalSeconds).ToString(),
            ], runDirectory);
            console.Detail($"{id} started (pid {process.Id}), log {Path.Combine(runDirectory, "logs", id + ".log")}");
        }
        return set;
    }

    Process Spawn(string id, IEnumerable<string> args, string runDirectory)
    {
        if (_trace is not null) args = args.Concat(new[] { "--trace", TracePart(id, runDirectory) });
        var info = new ProcessStartInfo(ExecutablePath())
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string a in LeadingArguments()) info.ArgumentList.Add(a);
        foreach (string a in args) info.ArgumentList.Add(a);

        Directory.CreateDirectory(Path.Combine(runDirectory, "logs"));
        var log = new StreamWriter(Path.Combine(runDirectory, "logs", id + ".log"), append: true) { AutoFlush = true };
        var process = new Process { StartInfo = info, EnableRaisingEvents = true };
        process.OutputDataReceived += (_, e) => Line(log, id, e.Data, error: false);
        process.ErrorDataReceived += (_, e) => Line(log, id, e.Data, error: true);
        process.Exited += (_, _) => OnExit(id, process);
        lock (_gate)
        {
            _running++;
            _processes.Add(process);
            _logs.Add(log);
        }
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return process;
    }

    void Line(StreamWriter log, string id, string? line, bool error)
    {
        if (line == null) return;
        bool logLost;
        lock (_gate) logLost = _unwritableLogs.Contains(id);
        if (!logLost)
        {
            try
            {
                lock (log) log.WriteLine(line);
            }
            catch (Exception e) when (Pretrain.Shared.IO.IoErrors.IsFileSystem(e))
            {
                // A full disk must not take the launcher down: say so once, keep the rest of the output on the terminal.
                lock (_gate) _unwritableLogs.Add(id);
                _console.Error($"could not write logs/{id}.log: {Pretrain.Shared.IO.IoErrors.Describe(e)}; its output goes to the terminal from now on");
                logLost = true;
            }
        }
        // Without its log a worker's errors (not their stack traces) come to the terminal: they are kept nowhere else.
        if (ForTerminal(id, line, error) || (logLost && TimestampedLevel().IsMatch(line) && !IsAkkaInternal(line))) _console.Worker(id, line);
    }

    /// <summary>
    /// What of a worker's output reaches the terminal: its start line (pid, ports) and its warnings. Its errors
    /// and their stack traces stay in its log: the coordinator's one failure line carries the first cause, and a
    /// worker that dies without reporting gets its last error line shown when it exits (<see cref="OnExit"/>).
    /// Akka's own cluster and remoting chatter (unreachable peers, downing: expected when one dies) stays there too.
    /// </summary>
    bool ForTerminal(string id, string line, bool error)
    {
        if (line.StartsWith($"[{id}] pid ", StringComparison.Ordinal)) return true;
        if (!error || IsAkkaInternal(line) || TimestampedLevel().Match(line) is not { Success: true } m) return false;
        if (m.Groups[1].Value == "warn") return true;
        lock (_gate) _lastError[id] = line;
        return false;
    }

    [System.Text.RegularExpressions.GeneratedRegex(@"^\d\d:\d\d:\d\d\.\d{3} (warn|error|fatal)\b")]
    private static partial System.Text.RegularExpressions.Regex TimestampedLevel();

    readonly HashSet<string> _unwritableLogs = [];
    readonly Dictionary<string, string> _lastError = [];

    static bool IsAkkaInternal(string line) =>
        line.Contains("/system/", StringComparison.Ordinal) || line.Contains("[remoting", StringComparison.Ordinal);

    void OnExit(string id, Process process)
    {
        int code = process.ExitCode;
        string? death = null;
        if (code != 0)
        {
            string how = code > 128 ? $"was killed by signal {code - 128}" : $"exited with code {code}";
            death = $"{id} (pid {process.Id}) {how}";
            string? lastError;
            lock (_gate) _lastError.Remove(id, out lastError);
            if (lastError != null && !_stopping) _console.Worker(id, lastError);
            _firstUnexpectedExit.TrySetResult(death);
            try { Died?.Invoke(id, process.Id, how); } catch (Exception) { /* a listener must not stop the restart */ }
        }
        bool restart;
        lock (_gate)
        {
            _running--;
            if (death != null) _lastDeath = death;
            restart = death != null && !_stopping && _restarts < _maxRestarts && _commands.ContainsKey(id);
            if (restart) _restarts++;
        }
        if (restart)
        {
            _console.Info($"{death}; starting it again ({Restarts} of --max-restarts {_maxRestarts}); it joins as a newcomer");
            try
            {
                var (args, runDirectory) = _commands[id];
                var again = Spawn(id, args, runDirectory);
                _console.Info($"{id} started again (pid {again.Id})");
                return;
            }
            catch (Exception e)
            {
                _console.Error($"could not start {id} again: {e.Message}");
            }
        }
        else if (death != null && !_stopping && _commands.ContainsKey(id))
            _console.Info($"{death}; not restarted (--max-restarts {_maxRestarts} used up)");
        lock (_gate)
            if (_running == 0) _allGone.TrySetResult(_lastDeath ?? "every worker exited");
    }

    /// <summary>Where this incarnation of worker <paramref name="id"/> writes its timeline: logs/ID.trace.json, then logs/ID.K.trace.json for the K-th.</summary>
    string TracePart(string id, string runDirectory)
    {
        lock (_gate)
        {
            int incarnation = _incarnations[id] = _incarnations.GetValueOrDefault(id) + 1;
            string part = Path.Combine(runDirectory, "logs", incarnation == 1 ? $"{id}.trace.json" : $"{id}.{incarnation}.trace.json");
            _traceParts.Add(part);
            return part;
        }
    }

    /// <summary>
    /// --trace: the workers' timelines, now complete (every worker has exited), as one Chrome trace; the parts are
    /// removed once it is written. A worker killed by SIGKILL lost at most its last second of events.
    /// </summary>
    void MergeTrace()
    {
        if (_trace is null) return;
        List<string> parts;
        lock (_gate) parts = [.. _traceParts];
        if (parts.Count == 0) return;
        try
        {
            var merged = TraceMerge.Merge(parts, _trace);
            _console.Info($"trace: {merged.Events} events of {merged.Files} worker process(es) in {_trace} (open it in https://ui.perfetto.dev or chrome://tracing)" +
                          (merged.Skipped > 0 ? $"; {merged.Skipped} line(s) cut short by a killed worker skipped" : ""));
        }
        catch (Exception e) when (IoErrors.IsFileSystem(e))
        {
            _console.Error($"--trace: could not write {_trace}: {IoErrors.Describe(e)}; each worker's timeline stays in {Path.GetDirectoryName(parts[0])} (*.trace.json)");
            return;
        }
        foreach (string part in parts)
        {
            try { File.Delete(part); }
            catch (Exception e) when (IoErrors.IsFileSystem(e)) { }   // a leftover part is harmless: the merged trace has its events
        }
    }

    /// <summary>Waits for every worker to exit on its own; kills what is left after the timeout. No worker is restarted after this.</summary>
    public async Task WaitForExitAsync(TimeSpan timeout)
    {
        _stopping = true;
        using var cts = new CancellationTokenSource(timeout);
        try { await Task.WhenAll(Snapshot().Select(p => p.WaitForExitAsync(cts.Token))); }
        catch (OperationCanceledException) { KillAll(); }
    }

    /// <summary>Stops every worker now (SIGKILL: their checkpoints are atomic, nothing half-written survives).</summary>
    public void Stop()
    {
        _stopping = true;
        KillAll();
    }

    List<Process> Snapshot()
    {
        lock (_gate) return [.. _processes];
    }

    void KillAll()
    {
        foreach (var p in Snapshot())
            try { if (!p.HasExited) p.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
    }

    public async ValueTask DisposeAsync()
    {
        await WaitForExitAsync(TimeSpan.FromSeconds(5));
        foreach (var p in Snapshot()) p.Dispose();
        List<StreamWriter> logs;
        lock (_gate) logs = [.. _logs];
        foreach (var l in logs)
        {
            try { await l.DisposeAsync(); }
            catch (Exception e) when (Pretrain.Shared.IO.IoErrors.IsFileSystem(e)) { }   // reported when the write failed
        }
        MergeTrace();
    }

    /// <summary>This program's executable: the apphost, or `dotnet pretrain.dll` when run through dotnet.</summary>
    static string ExecutablePath() => Environment.ProcessPath ?? "dotnet";

    static IEnumerable<string> LeadingArguments()
    {
        string? process = Environment.ProcessPath;
        // The entry assembly, not this one: a host that embeds the CLI (the tests' prepare host) starts
        // workers of its own kind.
        if (process != null && Path.GetFileNameWithoutExtension(process) == "dotnet")
            yield return System.Reflection.Assembly.GetEntryAssembly()?.Location ?? typeof(WorkerProcesses).Assembly.Location;
    }
}
