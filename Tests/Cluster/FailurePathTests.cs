using System.Diagnostics;
using System.Text.RegularExpressions;
using Pretrain.Coordinator.Summary;
using Pretrain.Tests.Elastic;
using Pretrain.Tests.Infrastructure;
using Pretrain.Worker.Training.Checkpoints;
using Xunit;

namespace Pretrain.Tests.Cluster;

/// <summary>
/// Every failure path says what happened and loses nothing (issue 11): corrupt checkpoints, a run
/// directory that holds an earlier run, a full or read-only disk, a failing worker. The real CLI.
/// </summary>
public sealed class FailurePathTests : IDisposable
{
    static readonly TimeSpan Bound = TimeSpan.FromMinutes(3);
    readonly string _root = Directory.CreateTempSubdirectory("pretrain-failures-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(_root, recursive: true); } catch (IOException) { }
    }

    string Recipe(long steps = 30) => ChaosRun.TinyRecipe(_root, steps);

    static Task<(int ExitCode, string Output)> Local(string directory, string recipe, params string[] extra) =>
        CliProcess.RunAsync(Bound, ["local", "--recipe", recipe, "--workers", "2", "--run-dir", directory,
            "--metrics-port", "-1", "--worker-metrics-port", "-1", .. extra]);

    static RunSummary Summary(string directory) => RunSummary.Read(Path.Combine(directory, "summary.json"));

    static void NoStackTrace(string output) =>
        Assert.DoesNotContain(output.Split('\n'), l => Regex.IsMatch(l, @"^\s+at \S+\(|^\s+at \S+\.\S+ in "));

    static void FlipByte(string file)
    {
        var bytes = File.ReadAllBytes(file);
        bytes[bytes.Length / 2] ^= 0x5a;
        File.WriteAllBytes(file, bytes);
    }

    [Fact]
    public async Task A_corrupt_checkpoint_is_a_warning_on_the_terminal_naming_the_file_and_resume_takes_the_one_before()
    {
        string dir = Path.Combine(_root, "corrupt");
        string recipe = Recipe();
        var (first, text) = await Local(dir, recipe, "--max-steps", "20");
        Assert.True(first == 0, text);
        FlipByte(Path.Combine(dir, "checkpoints", "step-00000020", CheckpointStore.ModelFile));

        var (code, output) = await Local(dir, recipe, "--resume");      // not --verbose: the warning must show anyway
        Assert.True(code == 0, output);
        Assert.Contains("warning: ", output);
        Assert.Contains(Path.Combine("step-00000020", CheckpointStore.ModelFile) + ": checksum mismatch", output);
        Assert.Equal(30, Summary(dir).Steps);
        NoStackTrace(output);
    }

    [Fact]
    public async Task Resume_with_no_valid_checkpoint_fails_with_exit_2_unless_resume_or_start_is_given()
    {
        string dir = Path.Combine(_root, "nothing-valid");
        string manifest = Path.Combine(dir, "checkpoints", "step-00000010", "manifest.json");
        Directory.CreateDirectory(Path.GetDirectoryName(manifest)!);
        File.WriteAllText(manifest, "{ not json");

        var (code, output) = await Local(dir, Recipe(), "--resume");
        Assert.True(code == 2, output);
        Assert.Contains("manifest.json", output);                  // the warning names the file
        Assert.Contains("--resume-or-start", output);
        Assert.DoesNotContain("worker-0 started", output);         // refused before any worker started
        NoStackTrace(output);

        var (again, text) = await Local(dir, Recipe(), "--resume-or-start", "--max-steps", "5");
        Assert.True(again == 0, text);
        Assert.Equal(5, Summary(dir).Steps);
    }

    [Fact]
    public async Task A_run_directory_holding_checkpoints_refuses_a_fresh_start_without_resume_or_overwrite()
    {
        string dir = Path.Combine(_root, "occupied");
        string earlier = Path.Combine(dir, "checkpoints", "step-00000010");
        Directory.CreateDirectory(earlier);
        File.WriteAllText(Path.Combine(earlier, "manifest.json"), "{}");

        var (code, output) = await Local(dir, Recipe(), "--max-steps", "5");
        Assert.True(code == 2, output);
        Assert.Contains("already holds a run", output);
        Assert.Contains("--overwrite", output);
        Assert.True(File.Exists(Path.Combine(earlier, "manifest.json")), "the earlier run was touched");

        var (again, text) = await Local(dir, Recipe(), "--overwrite", "--max-steps", "5");
        Assert.True(again == 0, text);
        Assert.False(Directory.Exists(earlier));
        Assert.Equal(5, Summary(dir).Steps);
    }

    [MountFact]
    public async Task A_disk_too_small_for_a_checkpoint_fails_the_job_in_one_line_and_keeps_the_previous_checkpoint_resumable_bit_exact()
    {
        string recipe = Recipe();
        string clean = Path.Combine(_root, "clean");
        var (cleanCode, cleanText) = await Local(clean, recipe);
        Assert.True(cleanCode == 0, cleanText);

        // The first ten steps on a normal disk; then the checkpoints folder becomes a tmpfs with room for one and a half.
        string full = Path.Combine(_root, "full");
        var (firstCode, firstText) = await Local(full, recipe, "--max-steps", "10");
        Assert.True(firstCode == 0, firstText);
        string step10 = Path.Combine(full, "checkpoints", "step-00000010");
        long size = Directory.GetFiles(step10).Sum(f => new FileInfo(f).Length);
        string saved = Path.Combine(_root, "saved-step-10");
        CopyDirectory(step10, saved);
        Directory.Delete(Path.Combine(full, "checkpoints"), recursive: true);
        string checkpoints = Path.Combine(full, "checkpoints");
        using (Mount.Tmpfs(checkpoints, size * 3 / 2 + 64 * 1024))
        {
            CopyDirectory(saved, Path.Combine(checkpoints, "step-00000010"));
            var (code, output) = await Local(full, recipe, "--resume");
            Assert.True(code == 1, output);
            Assert.Contains("no space left on device", output);
            Assert.Contains("step 20", output);
            NoStackTrace(output);
            Assert.Single(output.Split('\n'), l => l.Contains("the job failed", StringComparison.Ordinal));
            // The previous checkpoint verifies, and nothing half-written is left to hold the space.
            Assert.Equal(10, CheckpointStore.Open(Path.Combine(checkpoints, "step-00000010")).State.Step);
            Assert.Empty(Directory.GetDirectories(checkpoints, ".tmp-*"));
            var s = Summary(full);
            Assert.Equal("failed", s.Status);
            Assert.Contains("no space left on device", s.Error);
            Assert.EndsWith("step-00000010", s.LastCheckpoint);
            CopyDirectory(Path.Combine(checkpoints, "step-00000010"), saved + "-after");
        }

        // On a larger disk it resumes from there and ends bit-exact with the run that never failed.
        string larger = Path.Combine(_root, "larger");
        CopyDirectory(saved + "-after", Path.Combine(larger, "checkpoints", "step-00000010"));
        var (resumed, resumedText) = await Local(larger, recipe, "--resume");
        Assert.True(resumed == 0, resumedText);
        Assert.Equal(Summary(clean).ReplicaChecksums["0"], Summary(larger).ReplicaChecksums["0"]);
    }

    [MountFact]
    public async Task A_run_directory_whose_disk_fills_up_mid_run_fails_in_one_line_and_still_reports_what_happened()
    {
        // Journal, logs, checkpoints and summary on one small disk that a test fills once the first checkpoint exists.
        string dir = Path.Combine(_root, "filled");
        using var disk = Mount.Tmpfs(dir, 24 << 20);
        using var cli = StartLong(dir);
        string first = await CheckpointAsync(cli, dir, 10);
        Fill(Path.Combine(dir, "filler"));

        int code = await cli.WaitAsync(Bound);
        Assert.True(code == 1, cli.Output);
        Assert.Contains("no space left on device", cli.Output);
        Assert.Single(cli.Output.Split('\n'), l => l.Contains("the job failed", StringComparison.Ordinal));
        NoStackTrace(cli.Output);
        // What happened is on record: summary.json, or on the terminal when the disk could not take it.
        Assert.True(File.Exists(Path.Combine(dir, "summary.json")) || cli.Output.Contains("\"status\": \"failed\"", StringComparison.Ordinal), cli.Output);
        // Nothing half-written keeps the space, and the checkpoint written before still verifies.
        Assert.Empty(Directory.GetDirectories(Path.Combine(dir, "checkpoints"), ".tmp-*"));
        Assert.Equal(long.Parse(Path.GetFileName(first)[5..]), CheckpointStore.Open(first).State.Step);
    }

    /// <summary>Writes zeros into <paramref name="path"/> until the disk is full.</summary>
    static void Fill(string path)
    {
        var chunk = new byte[1 << 20];
        using var file = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, bufferSize: 0);   // unbuffered: nothing left to flush
        try
        {
            while (true) file.Write(chunk);
        }
        catch (IOException) { }
    }

    [MountFact]
    public async Task A_read_only_run_directory_is_refused_with_exit_2_naming_it()
    {
        string dir = Path.Combine(_root, "read-only");
        using var mount = Mount.ReadOnly(dir);
        var (code, output) = await Local(dir, Recipe(), "--max-steps", "5");
        Assert.True(code == 2, output);
        Assert.Contains(dir, output);
        Assert.Contains("read-only file system", output);
        NoStackTrace(output);
    }

    [Fact]
    public async Task A_failing_worker_shows_its_cause_once_without_a_stack_trace_and_the_launcher_exits_without_waiting_out_a_shutdown()
    {
        // An absurd learning rate: the loss turns non-finite at once and on_nonfinite_loss: stop fails the job.
        string recipe = Recipe(200);
        File.WriteAllText(recipe, Regex.Replace(File.ReadAllText(recipe), @"(?m)^(\s+lr: )\S+", "${1}1.0e+30"));
        string dir = Path.Combine(_root, "diverged");
        var launched = Stopwatch.StartNew();
        using var cli = CliProcess.Start("local", "--recipe", recipe, "--workers", "2", "--run-dir", dir, "--metrics-port", "-1", "--worker-metrics-port", "-1");
        // The time this machine, loaded as it is now, takes to start the launcher until its first line: the yardstick
        // for the CPU work of its exit.
        await cli.WaitForOutputAsync(o => o.Contains(" worker(s), ", StringComparison.Ordinal), Bound);
        var startUp = launched.Elapsed;
        await cli.WaitForOutputAsync(o => o.Contains("the job failed", StringComparison.Ordinal), Bound);
        var clock = Stopwatch.StartNew();
        int code = await cli.WaitAsync(Bound);
        var exited = clock.Elapsed;
        Assert.True(code == 1, cli.Output);
        // After the failure line the launcher waits at most 1 s for its workers and 0.5 s for its cluster node (a polite
        // cluster leave would add 3 s or more); the rest is CPU work, allowed twice what its start-up took.
        var allowed = TimeSpan.FromSeconds(1.5) + 2 * startUp;
        Assert.True(exited < allowed, $"the launcher took {exited.TotalSeconds:0.0} s to exit after the failure, more than its 1.5 s of " +
            $"bounded waits plus twice its {startUp.TotalSeconds:0.0} s start-up:\n{cli.Output}");
        NoStackTrace(cli.Output);
        // The cause once, in the job's failure line; the workers' own error lines stay in their logs.
        Assert.Single(Regex.Matches(cli.Output, "training diverged at step"));
        Assert.Matches(@"the job failed: worker-\d \(rank \d\) failed: training diverged", cli.Output);
        var logs = string.Concat(Directory.GetFiles(Path.Combine(dir, "logs"), "worker-*.log").Select(File.ReadAllText));
        Assert.Contains("training diverged at step", logs);
        // One way of naming a worker: "worker-1 (rank 1)", never "worker worker-1" or "rank 1 (worker-1)".
        Assert.DoesNotContain("worker worker-", cli.Output + logs);
        Assert.DoesNotMatch(@"rank \d \(worker-", cli.Output + logs);
        Assert.Equal("failed", Summary(dir).Status);
    }

    [Fact]
    public async Task Summary_json_keeps_the_jobs_figures_across_resumes_and_a_resume_of_a_finished_run_loses_none()
    {
        string dir = Path.Combine(_root, "segments");
        string recipe = Recipe();
        var (a, aText) = await Local(dir, recipe, "--max-steps", "20");
        Assert.True(a == 0, aText);
        var first = Summary(dir);
        var (b, bText) = await Local(dir, recipe, "--resume");
        Assert.True(b == 0, bText);
        var second = Summary(dir);
        Assert.Equal(30, second.Steps);
        Assert.Equal(first.FirstLoss, second.FirstLoss);           // the job's first loss, not the second segment's

        var (c, cText) = await Local(dir, recipe, "--resume");     // nothing left to train
        Assert.True(c == 0, cText);
        var third = Summary(dir);
        Assert.Equal("completed", third.Status);
        Assert.Equal(30, third.Steps);
        Assert.Equal(first.FirstLoss, third.FirstLoss);
        // The resume that runs no step carries the last segment's throughput from its checkpoint, exactly; its MFU is that
        // throughput over the matmul peak measured again by this process, so it differs from the second's by the peaks' ratio.
        Assert.Equal(second.SamplesPerSecond, third.SamplesPerSecond);
        Assert.True(second.SamplesPerSecond > 0, "the second segment reported no throughput");
        Assert.InRange(third.Mfu / second.Mfu, 0.25, 4.0);
        Assert.EndsWith("step-00000030", third.LastCheckpoint);
    }

    [Fact]
    public async Task Ctrl_C_writes_a_summary_with_the_steps_done_and_the_last_checkpoint_on_disk()
    {
        string dir = Path.Combine(_root, "interrupted");
        using var cli = StartLong(dir);
        await CheckpointAsync(cli, dir, 20);
        Assert.Equal(0, kill(cli.Id, 2));    // SIGINT, as Ctrl+C
        Assert.Equal(130, await cli.WaitAsync(Bound));
        var s = Summary(dir);
        Assert.Equal("interrupted", s.Status);
        Assert.True(s.Steps >= 20, $"summary says {s.Steps} steps");
        Assert.NotNull(s.LastCheckpoint);
        Assert.True(Directory.Exists(s.LastCheckpoint), s.LastCheckpoint);
        Assert.NotNull(s.RecipeHash);
    }

    [System.Runtime.InteropServices.DllImport("libc", SetLastError = true)]
    private static extern int kill(int pid, int signal);

    /// <summary>`pretrain local` of a job far longer than any test: it runs until the test hurts it.</summary>
    CliProcess StartLong(string dir) => CliProcess.Start("local", "--recipe", ChaosRun.TinyRecipe(_root, 100_000), "--workers", "2", "--run-dir", dir,
        "--metrics-port", "-1", "--worker-metrics-port", "-1");

    /// <summary>
    /// Waits until the run has published the checkpoint of <paramref name="step"/> or a later one (with checkpoint.keep a
    /// fast run may prune step's own before a poll sees it); returns the newest one's directory.
    /// </summary>
    static async Task<string> CheckpointAsync(CliProcess cli, string dir, long step)
    {
        string checkpoints = Path.Combine(dir, "checkpoints");
        var deadline = DateTime.UtcNow + Bound;
        while (!ChaosRun.Published(checkpoints).Any(s => s >= step) && DateTime.UtcNow < deadline && !cli.HasExited) await Task.Delay(20);
        var newest = ChaosRun.Published(checkpoints).DefaultIfEmpty(-1).Max();
        Assert.True(newest >= step, $"no checkpoint of step {step} or later in {checkpoints} within {Bound}" +
            (cli.HasExited ? " before the run exited" : "") + $":\n{cli.Output}");
        return Path.Combine(checkpoints, $"step-{newest:D8}");
    }

    static void CopyDirectory(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var file in Directory.GetFiles(from)) File.Copy(file, Path.Combine(to, Path.GetFileName(file)), overwrite: true);
    }
}
