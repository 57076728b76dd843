using Akka.Actor;
using System.Diagnostics;
using Pretrain.Cli.Commands;
using Pretrain.Coordinator;
using Pretrain.Coordinator.State;
using Pretrain.Coordinator.Summary;
using Pretrain.Shared.Messages;
using Pretrain.Shared.Recipes;
using Pretrain.Shared.Security;
using Pretrain.Shared.IO;
using Pretrain.Shared.Telemetry;
using Pretrain.Worker.Training.Checkpoints;

namespace Pretrain.Cli.Runs;

/// <summary>Starts the workers of a run once the coordinator listens (local runs); null for `pretrain coordinator`.</summary>
/// <param name="credentials">The arguments that give a worker the job's secret and, with TLS, its certificates.</param>
public delegate WorkerProcesses WorkerLaunch(int coordinatorPort, string runDirectory, IReadOnlyList<string> credentials, RunConsole console);

/// <summary>
/// A job seen from the coordinator's process: validate the recipe, start the coordinator node and its
/// metrics, define the job, show progress, and write summary.json when it ends. Every wait is bounded.
/// </summary>
public static class CoordinatorRun
{
    public static async Task<int> RunAsync(RunOptions options, WorkerLaunch? launch, CancellationToken ct)
    {
        if (launch is null && options.PublicHost is null && PodAddress.DnsName(PodAddress.Environment()) is { } podName)
            options = options with { PublicHost = podName };          // in a pod: its stable DNS name, which workers join
        string recipePath = Path.GetFullPath(options.RecipePath);
        if (!File.Exists(recipePath)) throw new UserError($"--recipe: {recipePath} does not exist.");
        var recipe = RecipeLoader.Load(recipePath);               // errors name the file and the field
        recipe.ValidateForWorldSize(options.Workers);
        string recipeYaml = await File.ReadAllTextAsync(recipePath, ct);
        string runDirectory = Path.GetFullPath(options.RunDirectory ?? DefaultRunDirectory(recipePath));
        var console = new RunConsole(options.Verbose);
        var checkpoints = new CheckpointStore(runDirectory, m => console.Warning(m.StartsWith("warning: ", StringComparison.Ordinal) ? m["warning: ".Length..] : m));
        bool journalExisted = options.PostgresJournal is null && File.Exists(Path.Combine(runDirectory, JournalOptions.JournalFileName));
        if (options.Overwrite) { RunDirectoryState.Clear(runDirectory, console); journalExisted = false; }
        RunDirectoryState.EnsureWritable(runDirectory);
        // The job secret workers prove (brief, principle 8): given, or the run directory's own, made once (0600).
        var secret = options.SecretFile is { } secretFile ? JobSecret.Load(secretFile) : JobSecret.CreateOrLoad(Path.Combine(runDirectory, JobSecret.FileName));
        List<string> credentials = ["--secret-file", secret.Source];
        if (options.MakeTls) (options, credentials) = LocalCertificates(options, runDirectory, credentials, console);
        if (options.TlsDataPlane && options.Tls is null)
            throw new UserError("--tls-data-plane needs --tls-cert and --tls-ca (the coordinator's certificate and the job CA from `pretrain certs`).");
        long maxSteps = Math.Min(options.MaxSteps ?? recipe.Steps, recipe.Steps);

        var clock = Stopwatch.StartNew();
        console.Info($"{recipe.Method} on {options.Workers} worker(s), {maxSteps} of {recipe.Steps} steps; run directory {runDirectory}");
        string readiness = "starting the cluster node and recovering the journal";
        bool accepting = false;
        using var metrics = MetricsEndpoint.Start(options.MetricsHost ?? options.Host, options.MetricsPort, () => (Volatile.Read(ref accepting), readiness));
        if (metrics != null) console.Info($"coordinator metrics on {metrics.Url}");

        var coordinatorOptions = new CoordinatorOptions
        {
            RunDirectory = runDirectory,
            Hostname = options.Host,
            PublicHostname = options.PublicHost,
            Port = options.Port,
            Journal = options.PostgresJournal is { } pg ? JournalOptions.Postgres(pg) : null,
            JobId = options.JobId ?? "job-" + DateTime.UtcNow.ToString("yyyyMMddTHHmmssfff"),
            VerboseLogging = options.Verbose,
            Timeout = options.Timeout,
            Secret = secret,
            Tls = options.Tls,
        };
        await using var coordinator = await CoordinatorHost.StartAsync(coordinatorOptions, ct);
        // A job already in the journal (a restarted `pretrain coordinator`) continues whatever the run directory
        // holds; a new one must not silently train over an earlier run, nor resume from nothing.
        var journaled = await coordinator.FetchStateAsync(ct);
        if (journaled.Job is null)
            RunDirectoryState.CheckNewJob(runDirectory, checkpoints, recipe.Source.Hash, options, journalExisted);
        else if (journaled.Phase == JobPhase.Failed && (options.Resume || options.ResumeOrStart))
            // The journal's job is over; continuing from its checkpoints is a new job in the same run directory.
            throw new UserError($"job '{coordinatorOptions.JobId}' in this journal failed ({journaled.FailureReason}); to continue from its last " +
                                $"checkpoint ({checkpoints.NewestQuietly()?.Directory ?? "none on disk"}), start again with --resume and a new --job-id.");
        new CoordinatorFile(options.PublicHost ?? options.Host, coordinator.Port, metrics?.Url, Environment.ProcessId, DateTime.UtcNow).Write(runDirectory);
        var progress = new ProgressPrinter(console, maxSteps);
        long lastStep = 0;
        coordinator.Progress += p =>
        {
            if (p.Rank != 0) return;
            progress.Report(p);
            lastStep = Math.Max(lastStep, p.Step);
        };
        coordinator.Notice += console.Info;
        var elastic = recipe.ElasticOrDefault;
        int maxWorkers = Math.Min(elastic.MaxWorkers > 0 ? elastic.MaxWorkers : options.Workers, recipe.MaxWorldSize);
        try
        {
            await coordinator.SubmitAsync(new JobSpec(recipeYaml, recipe.Source.Hash, options.Workers, maxSteps, runDirectory, options.Resume || options.ResumeOrStart, recipePath,
                elastic.MinWorkers, maxWorkers, elastic.WaitSeconds, options.Timeout.TotalSeconds, options.TlsDataPlane), ct);
        }
        catch (JobRefusedException refused)
        {
            string journal = options.PostgresJournal is null ? Path.Combine(runDirectory, "journal.db") : "the PostgreSQL journal";
            throw new UserError($"job '{coordinatorOptions.JobId}' in {journal}: {refused.Reason}.");
        }
        console.Info($"coordinator at {options.PublicHost ?? options.Host}:{coordinator.Port} (workers: --coordinator {options.PublicHost ?? options.Host}:{coordinator.Port})");
        readiness = $"job '{coordinatorOptions.JobId}' submitted; workers join {options.PublicHost ?? options.Host}:{coordinator.Port}";
        Volatile.Write(ref accepting, true);

        if (launch is null) console.Info($"job secret: {secret.Source} (workers: --secret-file with the same secret)");
        await using var workers = launch?.Invoke(coordinator.Port, runDirectory, credentials, console);
        // The launcher sees its workers die before any failure detector: tell the coordinator at once.
        if (workers != null)
            workers.Died += (id, pid, how) => coordinator.Job.Tell(new LoseWorker(id, $"its process {how}", "pretrain local", pid));
        JobOutcome outcome;
        try
        {
            var idle = options.IdleTimeout is { } limit && workers is null ? IdleAsync(coordinator, limit, ct) : null;
            var finished = WaitForOutcomeAsync(coordinator, workers, options.Timeout, ct);
            if (idle != null && await Task.WhenAny(finished, idle) == idle && !finished.IsCompleted)
            {
                progress.Done();
                var status = await coordinator.FetchStatusAsync(ct);
                string why = $"no worker was connected for {options.IdleTimeout!.Value.TotalSeconds:0} s (--idle-timeout) at generation {status.Generation}, step {status.LastStep}";
                console.Error($"{why}. The job is journaled: start `pretrain coordinator` again with the same arguments to continue it once workers can join.");
                await WriteSummaryAsync(RunSummary.Interrupted(recipe.Method, options.Workers, clock.Elapsed, why, status.LastStep, status.Generation)
                    with { LastCheckpoint = checkpoints.NewestQuietly()?.Directory }, runDirectory, console);
                return CoordinatorExitCodes.Idle;
            }
            outcome = await finished;
        }
        catch (Exception e) when (e is OperationCanceledException || (e is InvalidOperationException && coordinator.System.WhenTerminated.IsCompleted))
        {
            // Ctrl+C or SIGTERM: Akka's shutdown hook stops the coordinator, System.CommandLine cancels ct.
            // Checkpoints are written atomically, so stopping the workers now loses at most the steps
            // since the last one.
            progress.Done();
            workers?.Stop();
            console.Error("interrupted; the workers were stopped. Continue with --resume --run-dir " + runDirectory);
            var newest = checkpoints.NewestQuietly();
            var interrupted = RunSummary.Interrupted(recipe.Method, options.Workers, clock.Elapsed, steps: Math.Max(lastStep, newest?.Step ?? 0)) with
            {
                LastCheckpoint = newest?.Directory,
                RecipeHash = recipe.Source.Hash,
                Recipe = recipe.Source.Path,
            };
            await WriteSummaryAsync(interrupted, runDirectory, console);
            return 130;
        }
        progress.Done();
        // The job is decided and journaled: what the cluster says while its members leave or vanish
        // (unreachable, downing) is no longer news to the user.
        if (!options.Verbose) coordinator.System.EventStream.SetLogLevel(Akka.Event.LogLevel.ErrorLevel);

        var summary = RunSummary.From(outcome, recipe.Method, clock.Elapsed, recipe.IsReproducible ? recipe.Reproducible!.Shards : null) with { Recipe = recipe.Source.Path };
        if (!outcome.Succeeded)
        {
            // The journal knows rank 0's last report (twice a second) and the checkpoints recorded; the disk may
            // hold a newer one (written as the job failed): summary.json says what is really there.
            var newest = checkpoints.NewestQuietly();
            summary = summary with
            {
                Steps = Math.Max(Math.Max(summary.Steps, lastStep), newest?.Step ?? 0),
                LastCheckpoint = newest?.Directory ?? summary.LastCheckpoint,
            };
            console.Error($"the job failed: {outcome.FailureReason}");
            // The workers are told to stop; give them a second, then stop them (the failure is journaled).
            if (workers != null) await workers.WaitForExitAsync(TimeSpan.FromSeconds(1));
            if (workers != null) checkpoints.RemoveTemporaries();
            string? failedPath = await WriteSummaryAsync(summary, runDirectory, console);
            console.Error($"logs: {Path.Combine(runDirectory, "logs")}" + (failedPath != null ? $"; summary: {failedPath}" : ""));
            await LingerAsync(options, workers, console, ct);   // late workers are told the job failed: they exit 1, and a Job fails
            return 1;
        }
        // A resume of a finished run writes no checkpoint: the one it resumed from is the last.
        if (summary.LastCheckpoint is null) summary = summary with { LastCheckpoint = checkpoints.NewestQuietly()?.Directory };
        string summaryPath = await WriteSummaryAsync(summary, runDirectory, console) ?? "(printed above)";
        console.Summary(summary, summaryPath);
        await LingerAsync(options, workers, console, ct);
        return 0;
    }

    /// <summary>
    /// With --linger (a coordinator of its own, not the launcher's), stays up once the job is over: a Job's replacement pod
    /// may still be on its way (its predecessor died during the last steps). Told that the job completed it exits 0 and its
    /// index completes; told that it failed it exits 1 and the Job fails. Unanswered it would wait --coordinator-timeout,
    /// exit 5 and be replaced again. SIGTERM ends the wait.
    /// </summary>
    static async Task LingerAsync(RunOptions options, WorkerProcesses? workers, RunConsole console, CancellationToken ct)
    {
        if (options.Linger <= TimeSpan.Zero || workers is not null) return;
        console.Info($"answering workers that register late for {options.Linger.TotalSeconds:0} s (--linger)");
        try { await Task.Delay(options.Linger, ct); }
        catch (OperationCanceledException) { }
    }

    /// <summary>
    /// The coordinator's outcome — or, when every local worker process is gone for good (dead and not
    /// restarted) and the coordinator has not concluded within the timeout, a failure naming the last
    /// death. A single death is the coordinator's to handle (the survivors regroup). Never waits forever.
    /// </summary>
    static async Task<JobOutcome> WaitForOutcomeAsync(CoordinatorHost coordinator, WorkerProcesses? workers, TimeSpan timeout, CancellationToken ct)
    {
        var gone = workers?.AllGone ?? new TaskCompletionSource<string>().Task;
        var first = await Task.WhenAny(coordinator.Outcome, gone).WaitAsync(ct);
        if (first == coordinator.Outcome) return await coordinator.Outcome;
        string which = await gone;
        try
        {
            return await coordinator.Outcome.WaitAsync(timeout, ct);
        }
        catch (TimeoutException)
        {
            return new JobOutcome(false, null, 0, 0, [], [], $"every worker exited ({which}), and the coordinator did not conclude within {timeout.TotalSeconds:0} s");
        }
    }

    /// <summary>
    /// Writes summary.json; when the disk cannot take it (full, read-only) says so in one line and prints the
    /// summary on stdout instead, so what happened is never lost. Returns the path, or null when printed.
    /// </summary>
    static async Task<string?> WriteSummaryAsync(RunSummary summary, string runDirectory, RunConsole console)
    {
        try
        {
            return await summary.WriteAsync(runDirectory, CancellationToken.None);
        }
        catch (Exception e) when (IoErrors.IsFileSystem(e))
        {
            string path = Path.Combine(runDirectory, "summary.json");
            try { File.Delete(path + ".tmp"); } catch (Exception cleanup) when (IoErrors.IsFileSystem(cleanup)) { }
            console.Error($"could not write {path}: {IoErrors.Describe(e)}; the summary follows");
            Console.Out.WriteLine(summary.ToJson());
            return null;
        }
    }

    /// <summary>Completes once no worker has been a live cluster member for <paramref name="limit"/> (checked every second).</summary>
    static async Task IdleAsync(CoordinatorHost coordinator, TimeSpan limit, CancellationToken ct)
    {
        var since = DateTime.UtcNow;
        while (true)
        {
            await Task.Delay(TimeSpan.FromSeconds(1), ct);
            if (coordinator.LiveWorkers > 0) since = DateTime.UtcNow;
            else if (DateTime.UtcNow - since >= limit) return;
        }
    }

    /// <summary>
    /// `local --tls`: a job CA and certificates for the coordinator and the workers in RUN_DIR/tls (made once; a resumed
    /// run keeps them), the coordinator's loaded, and the workers' arguments extended with theirs.
    /// </summary>
    static (RunOptions, List<string>) LocalCertificates(RunOptions options, string runDirectory, List<string> credentials, RunConsole console)
    {
        string folder = Path.Combine(runDirectory, "tls");
        if (JobCertificates.ExistingAuthority(folder) is null)
        {
            string[] loopback = ["localhost", "127.0.0.1"];
            JobCertificates.IssueDirectory(folder, "pretrain-local", [new NodeRequest("coordinator", loopback), new NodeRequest("worker", loopback)],
                TimeSpan.FromDays(30), replaceAuthority: false);
            console.Info($"TLS on both planes: job CA and node certificates in {folder}");
        }
        string ca = Path.Combine(folder, JobCertificates.AuthorityCertificateFile);
        var tls = Pretrain.Shared.Cluster.ClusterTls.Load(Path.Combine(folder, "coordinator.pfx"), ca);
        return (options with { Tls = tls, TlsDataPlane = true }, [.. credentials, "--tls-cert", Path.Combine(folder, "worker.pfx"), "--tls-ca", ca]);
    }

    static string DefaultRunDirectory(string recipePath) =>
        Path.Combine("runs", Path.GetFileNameWithoutExtension(recipePath) + "-" + DateTime.Now.ToString("yyyyMMdd-HHmmss"));
}

/// <summary>Exit codes of `pretrain coordinator` and `pretrain local` beyond 0 (done), 1 (failed), 2 (bad input) and 130 (interrupted).</summary>
public static class CoordinatorExitCodes
{
    /// <summary>No worker was connected for --idle-timeout; the job is journaled and continues when the coordinator is started again.</summary>
    public const int Idle = 3;
}
