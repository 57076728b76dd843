using System.Diagnostics;
using Pretrain.Cli.Commands;
using Pretrain.Coordinator;
using Pretrain.Coordinator.Actors;
using Pretrain.Coordinator.Preparation;
using Pretrain.Data.Preparation;

namespace Pretrain.Cli.Runs;

/// <summary>What `pretrain prepare` needs.</summary>
public sealed record PrepareOptions
{
    public required PrepareSpec Spec { get; init; }
    public required Func<PrepareSpec, IPreparationPlan> Plans { get; init; }
    /// <summary>Local worker processes that take tasks; 0 = the coordinator runs every task itself.</summary>
    public int Workers { get; init; }
    /// <summary>journal.db and logs/; the output folder by default, so a re-run into it resumes.</summary>
    public required string RunDirectory { get; init; }
    public string? PostgresJournal { get; init; }
    public int Port { get; init; }
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(30);
    public bool Verbose { get; init; }
    /// <summary>--secret-file: the secret preparing workers prove; null = RUN_DIR/secret, made when missing.</summary>
    public string? SecretFile { get; init; }
}

/// <summary>
/// A preparation seen from the coordinator's process: check the inputs, plan, start the coordinator
/// node with the preparation actor, start local workers, show progress, report the outcome.
/// </summary>
public static class PrepareRun
{
    public static async Task<int> RunAsync(PrepareOptions options, CancellationToken ct)
    {
        var spec = options.Spec;
        foreach (var input in spec.Inputs)
            if (!File.Exists(input) && !Directory.Exists(input))
                throw new UserError($"--input: {input} does not exist" + (spec.Kind == "fashion-mnist" && input == PrepareCommand.FashionMnistDirectory
                    ? " (install the Debian package dataset-fashion-mnist, or give --input DIR)." : "."));
        if (File.Exists(spec.Output)) throw new UserError($"--output: {spec.Output} is a file; give a folder.");

        var console = new RunConsole(options.Verbose);
        var clock = Stopwatch.StartNew();
        console.Info($"prepare {spec.Kind}: {string.Join(", ", spec.Inputs)} -> {spec.Output}");
        IPreparationPlan plan;
        try
        {
            plan = await Task.Run(() => options.Plans(spec), ct);   // may scan the inputs
        }
        catch (NotSupportedException e)
        {
            throw new UserError($"prepare {spec.Kind}: {e.Message}.");
        }
        Directory.CreateDirectory(spec.Output);

        // The secret preparing workers prove. Without --secret-file, a fresh one in a private temporary folder for this
        // run's own workers (the run directory is the output folder by default, and a dataset folder is no place for it).
        using var privateSecret = options.SecretFile is null ? new PrivateSecret() : null;
        var secret = Pretrain.Shared.Security.JobSecret.Load(options.SecretFile ?? privateSecret!.Path);
        await using var host = await PreparationHost.StartAsync(new CoordinatorOptions
        {
            Secret = secret,
            RunDirectory = options.RunDirectory,
            Port = options.Port,
            Journal = options.PostgresJournal is { } pg ? JournalOptions.Postgres(pg) : null,
            VerboseLogging = options.Verbose,
            Timeout = options.Timeout,
        }, spec.Output, ct);
        var progress = new PreparationProgressPrinter(console);
        host.Progress += progress.Report;
        try
        {
            await host.StartAsync(spec, plan, ct);
        }
        catch (InvalidOperationException e)
        {
            throw new UserError($"{e.Message} (journal in {options.RunDirectory})");
        }
        var resumed = await host.Resumed.WaitAsync(ct);
        progress.Start(resumed);
        if (resumed.TasksDone > 0)
            console.Info($"resuming: {resumed.TasksDone} of {resumed.Tasks} tasks already done, skipping them");
        console.Detail($"coordinator at 127.0.0.1:{host.Port} (more workers: pretrain worker --prepare --coordinator HOST:{host.Port} --secret-file {secret.Source})");

        await using var workers = options.Workers > 0 && resumed.TasksDone < resumed.Tasks
            ? WorkerProcesses.StartPreparers(options.Workers, host.Port, options.RunDirectory, secret.Source, options.Timeout, console)
            : null;
        if (workers != null) console.Info($"{options.Workers} worker(s) take tasks; logs in {Path.Combine(options.RunDirectory, "logs")}");

        PreparationOutcome outcome;
        try
        {
            outcome = await host.Outcome.WaitAsync(ct);
        }
        catch (OperationCanceledException)
        {
            progress.Done();
            workers?.Stop();
            console.Error("interrupted; run the same command again to resume (finished shards are kept)");
            return 130;
        }
        progress.Done();
        if (!outcome.Succeeded)
        {
            console.Error($"preparation failed: {outcome.FailureReason}");
            return 1;
        }
        string skipped = outcome.Skipped > 0 ? $" ({outcome.Skipped} already done before this run)" : "";
        console.Info($"done: {outcome.Tasks} tasks{skipped}, {outcome.Bytes / 1e6:0.0} MB of input, {clock.Elapsed.TotalSeconds:0.0} s -> {spec.Output}");
        return 0;
    }
}

/// <summary>Tasks done / total, MB/s of input over this run, and ETA, as one progress line.</summary>
public sealed class PreparationProgressPrinter(RunConsole console)
{
    readonly Stopwatch _clock = Stopwatch.StartNew();
    DateTime _lastPrint = DateTime.MinValue;
    long _bytesAtStart;

    public void Start(PreparationProgress resumed)
    {
        _bytesAtStart = resumed.BytesDone;
        _clock.Restart();
    }

    public void Report(PreparationProgress p)
    {
        var now = DateTime.UtcNow;
        if (now - _lastPrint < ProgressPrinter.Interval(console) && p.TasksDone != p.Tasks) return;
        _lastPrint = now;
        double seconds = Math.Max(_clock.Elapsed.TotalSeconds, 1e-3);
        double bytesPerSecond = (p.BytesDone - _bytesAtStart) / seconds;
        double fraction = p.Bytes > 0 ? (double)p.BytesDone / p.Bytes : (double)p.TasksDone / Math.Max(1, p.Tasks);
        string eta = bytesPerSecond > 0 ? TimeSpan.FromSeconds((p.Bytes - p.BytesDone) / bytesPerSecond).ToString(@"h\:mm\:ss") : "?";
        console.Progress($"tasks {p.TasksDone}/{p.Tasks} [{ProgressPrinter.Bar(fraction)}] {fraction:P0}  {bytesPerSecond / 1e6:0.0} MB/s  eta {eta}");
    }

    public void Done() => console.EndProgress();
}


/// <summary>A fresh job secret in a temporary folder only this user can enter, removed when the run ends.</summary>
sealed class PrivateSecret : IDisposable
{
    readonly string _folder = Directory.CreateTempSubdirectory("pretrain-secret-").FullName;   // mode 0700

    public PrivateSecret() => Pretrain.Shared.Security.JobSecret.CreateOrLoad(Path);

    public string Path => System.IO.Path.Combine(_folder, Pretrain.Shared.Security.JobSecret.FileName);

    public void Dispose()
    {
        try { Directory.Delete(_folder, recursive: true); } catch (IOException) { }
    }
}
