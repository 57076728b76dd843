using System.Diagnostics;
using System.Globalization;
using Akka.Actor;
using Pretrain.Coordinator;
using Pretrain.Shared.Messages;

// Coordinator recovery from its SQLite journal. A job of one worker journals EVENTS StepCommitted events (rank 0's
// progress reports, through the real job actor); then a new coordinator takes the job up from the same journal,
// REPEATS times, and recovery is the time from CoordinatorHost.StartAsync to the job actor's first answer holding
// the journaled last step. Once per snapshot interval (PRETRAIN_SNAPSHOT_EVERY, read by the job actor; 0 = never).
// Every phase runs in a process of its own, as a restarted coordinator does: cold JIT and connection pool, and the
// job actor reads the snapshot interval afresh.
// Usage: Pretrain.Bench.Journal [EVENTS] [--every N,N...] [--repeats N]   (default 100000, 0,1000, 3): a Markdown table on stdout
//        Pretrain.Bench.Journal --write DIR EVENTS | --recover DIR EVENTS  one phase, for the above: key=value on stdout
const string SnapshotEvery = "PRETRAIN_SNAPSHOT_EVERY";
var culture = CultureInfo.InvariantCulture;

if (args is ["--write", var writeDirectory, var writeEvents])
{
    await WriteAsync(writeDirectory, long.Parse(writeEvents, culture));
    return 0;
}
if (args is ["--recover", var recoverDirectory, var recoverEvents])
{
    await RecoverAsync(recoverDirectory, long.Parse(recoverEvents, culture));
    return 0;
}

var events = 100_000L;
string[] intervals = ["0", "1000"];
var repeats = 3;
for (var i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--every":
            intervals = args[++i].Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            break;
        case "--repeats":
            repeats = int.Parse(args[++i], culture);
            break;
        default:
            events = long.Parse(args[i], NumberStyles.AllowThousands, culture);
            break;
    }
}

var loadAtStart = LoadAverage();
var rows = new List<string>();
foreach (var every in intervals)
{
    // The phases' processes inherit it; the job actor of each reads it when it starts.
    Environment.SetEnvironmentVariable(SnapshotEvery, every);
    var directory = Path.Combine(Path.GetTempPath(), $"pretrain-bench-journal-{Environment.ProcessId}-{every}");
    try
    {
        Console.Error.WriteLine($"{SnapshotEvery}={every}: journaling {events:N0} events in {directory}");
        var write = await RunPhaseAsync("--write", directory, events, every);
        var journalMegabytes = Directory.GetFiles(directory, JournalOptions.JournalFileName + "*").Sum(f => new FileInfo(f).Length) / 1e6;
        var recoveries = new List<double>();
        var nodeStarts = new List<double>();
        for (var run = 1; run <= repeats; run++)
        {
            var recovered = await RunPhaseAsync("--recover", directory, events, every);
            recoveries.Add(double.Parse(recovered["recovery_seconds"], culture));
            nodeStarts.Add(double.Parse(recovered["node_start_seconds"], culture));
            Console.Error.WriteLine($"{SnapshotEvery}={every}: restart {run} of {repeats} recovered step {events:N0} in {recoveries[^1]:F2} s");
        }
        var median = Median(recoveries);
        var writesPerSecond = events / double.Parse(write["write_seconds"], culture);
        var interval = every == "0" ? "never" : $"{int.Parse(every, culture):N0} events";
        var runs = string.Join(", ", recoveries.Select(r => r.ToString("F2", culture)));
        rows.Add($"| {events:N0} | {interval} | {median:F2} | {runs} | {Median(nodeStarts):F2} | {journalMegabytes:F1} | {writesPerSecond:N0} | {(median < 5 ? "yes" : "no")} |");
    }
    finally
    {
        if (Directory.Exists(directory)) Directory.Delete(directory, recursive: true);
    }
}

Console.WriteLine("| events | snapshot every | recovery, median (s) | recoveries (s) | node start, median (s) | journal (MB) | journaled (events/s) | under 5 s |");
Console.WriteLine("| --- | --- | --- | --- | --- | --- | --- | --- |");
foreach (var row in rows) Console.WriteLine(row);
Console.WriteLine();
Console.WriteLine($"Load average (1, 5, 15 min) at the start: {loadAtStart}; at the end: {LoadAverage()}.");
return 0;

// Runs one phase in a new process of this program and returns the key=value pairs of its result line.
async Task<Dictionary<string, string>> RunPhaseAsync(string mode, string directory, long count, string every)
{
    var self = Environment.ProcessPath ?? throw new InvalidOperationException("The benchmark cannot find its own executable.");
    string[] arguments = [mode, directory, count.ToString(culture)];
    // Under `dotnet Pretrain.Bench.Journal.dll` the process is the dotnet host: run the same assembly again.
    var start = Path.GetFileNameWithoutExtension(self) == "dotnet"
        ? new ProcessStartInfo(self, [Path.Combine(AppContext.BaseDirectory, "Pretrain.Bench.Journal.dll"), .. arguments])
        : new ProcessStartInfo(self, arguments);
    start.RedirectStandardOutput = true;   // stderr (progress, Akka's warnings) goes straight to the terminal
    using var process = Process.Start(start) ?? throw new InvalidOperationException($"Could not start {self}.");
    var output = await process.StandardOutput.ReadToEndAsync();
    await process.WaitForExitAsync();
    if (process.ExitCode != 0)
        throw new InvalidOperationException($"The {mode} phase ({SnapshotEvery}={every}) exited with code {process.ExitCode}:\n{output}");
    var marker = mode == "--write" ? "write_seconds=" : "recovery_seconds=";
    var line = output.Split('\n').Select(l => l.Trim()).LastOrDefault(l => l.StartsWith(marker, StringComparison.Ordinal))
        ?? throw new InvalidOperationException($"The {mode} phase printed no result line:\n{output}");
    var result = line.Split(' ').Select(pair => pair.Split('=', 2)).ToDictionary(pair => pair[0], pair => pair[1]);
    if (result["snapshot_every"] != every)
        throw new InvalidOperationException($"The {mode} phase saw {SnapshotEvery}={result["snapshot_every"]}, not {every}.");
    return result;
}

static CoordinatorOptions Options(string directory) => new()
{
    RunDirectory = directory,   // journal.db (SQLite) in it
    Port = 0,
    // Asks wait this long: a recovery without snapshots replays every event before the job actor answers.
    Timeout = TimeSpan.FromMinutes(5),
};

static string SnapshotSetting() => Environment.GetEnvironmentVariable("PRETRAIN_SNAPSHOT_EVERY") ?? "";

// Phase one: a coordinator, a job of one worker, `events` committed steps; the journal stays in `directory`.
static async Task WriteAsync(string directory, long events)
{
    const int Batch = 1000;   // reports in flight at most: the job actor persists one at a time, so more only fill its mailbox
    var clock = Stopwatch.StartNew();
    await using var host = await CoordinatorHost.StartAsync(Options(directory));
    await host.SubmitAsync(new JobSpec(RecipeYaml: "bench: journal recovery\n", RecipeHash: "bench-journal", WorldSize: 1,
        MaxSteps: events + 1, RunDirectory: directory, Resume: false));
    // The worker is a local actor: the job actor tracks it like a remote one, and its replies go nowhere.
    var worker = host.System.ActorOf(Props.Create<IgnoreEverything>(), "bench-worker");
    host.Job.Tell(new RegisterWorker("w0", "127.0.0.1", 29500, 9100, Environment.ProcessId, "bench"), worker);
    var generation = (await WaitForRunningAsync(host)).Generation;

    clock.Restart();
    for (var step = 1L; step <= events; step++)
    {
        host.Job.Tell(new ReportProgress("w0", generation, 0, step, 4.0 / Math.Sqrt(step), 1000), worker);
        if (step % Batch != 0 && step != events) continue;
        // Commands wait in the job actor's stash while an event persists, so this answer comes after every report above.
        var status = await host.FetchStatusAsync();
        if (status.LastStep != step)
            throw new InvalidOperationException($"The job actor holds step {status.LastStep} after step {step} was reported ({status.Phase}).");
        if (step % 10_000 == 0)
            Console.Error.WriteLine($"  {step:N0} of {events:N0} events journaled, {step / clock.Elapsed.TotalSeconds:N0} events/s");
    }
    var seconds = clock.Elapsed.TotalSeconds;
    // A snapshot the job actor asked for last is written by the snapshot store after the ask: give it time to land.
    await Task.Delay(TimeSpan.FromSeconds(1));
    // Stop the job actor before the node: the worker actor stopping with the node would otherwise be journaled as lost.
    await host.Job.GracefulStop(TimeSpan.FromSeconds(30));
    Console.WriteLine($"write_seconds={seconds:F3} events={events} snapshot_every={SnapshotSetting()}");
}

// Phase two: a new coordinator on the same journal; recovery ends when the job actor answers with the last step.
static async Task RecoverAsync(string directory, long events)
{
    var clock = Stopwatch.StartNew();
    await using var host = await CoordinatorHost.StartAsync(Options(directory));
    var nodeStart = clock.Elapsed.TotalSeconds;
    // Stashed by the job actor until its recovery completes.
    var status = await host.FetchStatusAsync();
    var seconds = clock.Elapsed.TotalSeconds;
    if (status.LastStep != events)
        throw new InvalidOperationException($"The recovered job holds step {status.LastStep}, not {events} ({status.Phase}).");
    Console.WriteLine($"recovery_seconds={seconds:F3} node_start_seconds={nodeStart:F3} phase={status.Phase} snapshot_every={SnapshotSetting()}");
}

static async Task<JobStatus> WaitForRunningAsync(CoordinatorHost host)
{
    var clock = Stopwatch.StartNew();
    while (true)
    {
        var status = await host.FetchStatusAsync();
        if (status.Phase == "Running") return status;
        if (clock.Elapsed > TimeSpan.FromSeconds(60))
            throw new TimeoutException($"The job is {status.Phase} 60 s after its worker registered, not Running.");
        await Task.Delay(50);
    }
}

static double Median(IReadOnlyList<double> values)
{
    var sorted = values.Order().ToArray();
    var middle = sorted.Length / 2;
    return sorted.Length % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

static string LoadAverage() =>
    File.Exists("/proc/loadavg") ? string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "unknown";

/// <summary>Stands in for the worker process: the job actor's answers (registered, generation started) are dropped.</summary>
internal sealed class IgnoreEverything : ReceiveActor
{
    public IgnoreEverything() => ReceiveAny(_ => { });
}
