using Pretrain.Coordinator.Summary;
using Pretrain.Shared.Messages;

namespace Pretrain.Cli.Runs;

/// <summary>What a run prints: short tagged lines, errors to stderr, one live progress line on a terminal.</summary>
public sealed class RunConsole(bool verbose)
{
    readonly Lock _gate = new();
    bool _progressLineOpen;

    public bool Interactive { get; } = !Console.IsOutputRedirected;

    public void Info(string message) => Write(Console.Out, "[pretrain] " + message);

    public void Detail(string message) { if (verbose) Info(message); }

    public void Error(string message) => Write(Console.Error, "[pretrain] error: " + message);

    /// <summary>Always shown, verbose or not: something is wrong but the run goes on (a corrupt checkpoint skipped).</summary>
    public void Warning(string message) => Write(Console.Error, "[pretrain] warning: " + message);

    public void Worker(string id, string line) => Write(Console.Error, line.StartsWith($"[{id}]", StringComparison.Ordinal) || line.Contains($" [{id}] ", StringComparison.Ordinal) ? line : $"[{id}] {line}");

    /// <summary>Rewrites the progress line in place on a terminal; a plain line otherwise.</summary>
    public void Progress(string line)
    {
        lock (_gate)
        {
            if (Interactive) { Console.Out.Write("\r" + line.PadRight(Math.Max(line.Length, Console.WindowWidth - 1))); _progressLineOpen = true; }
            else Console.Out.WriteLine(line);
        }
    }

    public void Summary(RunSummary s, string path)
    {
        Info($"done: {s.Steps} steps on {s.WorldSize} worker(s), loss {s.FirstLoss:0.0000} → {s.FinalLoss:0.0000}, {s.SamplesPerSecond:0} samples/s{(s.Mfu > 0 ? $" (MFU {s.Mfu:P1})" : "")}, {s.WallSeconds:0.0} s");
        foreach (var (name, value) in s.Eval) Info($"eval {name} = {value:0.0000}");
        Info($"replicas identical: {(s.ReplicaChecksums.Values.Distinct().Count() == 1 ? "yes" : "NO")} ({string.Join(", ", s.ReplicaChecksums.Select(kv => $"rank {kv.Key} {kv.Value}"))})");
        Info($"summary: {path}");
    }

    void Write(TextWriter writer, string line)
    {
        lock (_gate)
        {
            if (_progressLineOpen) { Console.Out.WriteLine(); _progressLineOpen = false; }
            writer.WriteLine(line);
        }
    }

    public void EndProgress()
    {
        lock (_gate) if (_progressLineOpen) { Console.Out.WriteLine(); _progressLineOpen = false; }
    }
}

/// <summary>Turns rank 0's progress reports into a progress bar with loss, throughput and ETA.</summary>
public sealed class ProgressPrinter(RunConsole console, long totalSteps)
{
    DateTime _lastPrint = DateTime.MinValue;
    readonly DateTime _start = DateTime.UtcNow;
    long _firstStep = -1;

    public void Report(ReportProgress p)
    {
        if (_firstStep < 0) _firstStep = p.Step - 1;
        var now = DateTime.UtcNow;
        // The last step is always shown.
        if (now - _lastPrint < Interval(console) && p.Step != totalSteps) return;
        _lastPrint = now;
        double fraction = totalSteps > 0 ? Math.Clamp((double)p.Step / totalSteps, 0, 1) : 0;
        string bar = Bar(fraction);
        double perStep = (now - _start).TotalSeconds / Math.Max(1, p.Step - _firstStep);
        var eta = TimeSpan.FromSeconds(perStep * Math.Max(0, totalSteps - p.Step));
        console.Progress($"step {p.Step}/{totalSteps} [{bar}] {fraction:P0}  loss {p.Loss:0.0000}  {p.SamplesPerSecond:0} samples/s  eta {eta:h\\:mm\\:ss}");
    }

    public void Done() => console.EndProgress();

    /// <summary>A 24-character bar, e.g. <c>=========>              </c>.</summary>
    public static string Bar(double fraction)
    {
        const int width = 24;
        int filled = (int)(Math.Clamp(fraction, 0, 1) * width);
        return new string('=', filled) + (filled < width ? ">" + new string(' ', width - filled - 1) : "");
    }

    /// <summary>A terminal redraws at most 10 times a second; a log gets a line every 2 s.</summary>
    public static TimeSpan Interval(RunConsole console) => console.Interactive ? TimeSpan.FromMilliseconds(100) : TimeSpan.FromSeconds(2);
}
