using Microsoft.Data.Sqlite;
using Pretrain.Coordinator.Preparation;
using Pretrain.Tests.Infrastructure;
using Pretrain.Shared.Messages;
using Xunit;

namespace Pretrain.Tests.Preparation;

/// <summary>
/// Issue 3's acceptance through a real CLI process: `prepare` SIGKILLed half way and run again gives
/// byte-identical shards to an uninterrupted run, and its journal shows no task done twice.
/// </summary>
public sealed class PrepareKillResumeTests : IDisposable
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(45);
    private readonly string _root = Directory.CreateTempSubdirectory("pretrain-prepare-kill-").FullName;

    public void Dispose()
    {
        SqliteConnection.ClearAllPools();
        try { Directory.Delete(_root, recursive: true); } catch (IOException) { }
    }

    /// <summary>
    /// With the tests' deterministic plan (kind test-pattern, run by the test assembly as CLI host), as
    /// long as the real plans are being built. The uninterrupted run also starts 2 local worker processes
    /// (the coordinator works until they join, so who made which shard varies); the shards must not
    /// depend on it.
    /// </summary>
    [Fact]
    public async Task Killing_prepare_half_way_and_running_it_again_gives_identical_shards_and_no_task_done_twice()
    {
        string input = PatternPlan.WriteInputs(Path.Combine(_root, "in"), 12);
        string reference = Path.Combine(_root, "reference"), resumed = Path.Combine(_root, "resumed");
        CliProcess Prepare(string output, int delayMs, params string[] more) => CliProcess.StartTestHost(
            new Dictionary<string, string> { [PatternPlan.DelayVariable] = delayMs.ToString() },
            ["prepare", PatternPlan.Kind, "--input", input, "--output", output, .. more]);

        await RunAndKillHalfWayThenResumeAsync(
            uninterrupted: () => Prepare(reference, 0, "--workers", "2"),
            slow: () => Prepare(resumed, 300),
            fast: () => Prepare(resumed, 0),
            resumed, tasks: 12);
        AssertSameShards(reference, resumed);
    }

    /// <summary>The same with the product's `pretrain prepare fashion-mnist` (60k + 10k images, Debian's dataset-fashion-mnist).</summary>
    [Fact]
    public async Task Killing_prepare_fashion_mnist_half_way_and_running_it_again_gives_identical_shards()
    {
        string reference = Path.Combine(_root, "reference"), resumed = Path.Combine(_root, "resumed");
        CliProcess Prepare(string output) => CliProcess.Start("prepare", "fashion-mnist", "--output", output, "--shard-mb", "1");   // ~56 tasks
        // The interrupted run is the test host running the same real plan with 150 ms before each task
        // (PrepareTestHost): at full speed the whole preparation can finish before a poll sees it start.
        CliProcess Slow(string output) => CliProcess.StartTestHost(new Dictionary<string, string> { [PatternPlan.DelayVariable] = "150" },
            "prepare", "fashion-mnist", "--output", output, "--shard-mb", "1");
        await RunAndKillHalfWayThenResumeAsync(() => Prepare(reference), () => Slow(resumed), () => Prepare(resumed), resumed, tasks: null);
        AssertSameShards(reference, resumed);
    }

    private static async Task RunAndKillHalfWayThenResumeAsync(Func<CliProcess> uninterrupted, Func<CliProcess> slow, Func<CliProcess> fast, string output, int? tasks)
    {
        using (var run = uninterrupted())
            Assert.True(await run.WaitAsync(Timeout) == 0, run.Output);

        string journal = Path.Combine(output, "journal.db");
        string id = PreparationHost.PersistenceId(output);
        int done;
        using (var run = slow())
        {
            // Half way: some completions journaled, more to come. Then SIGKILL, no goodbye.
            var deadline = DateTime.UtcNow + Timeout;
            while ((done = Completed()) < (tasks ?? 4) / 3 && !run.HasExited && DateTime.UtcNow < deadline) await Task.Delay(100);
            Assert.False(run.HasExited, "prepare finished before it could be killed:\n" + run.Output);
            Assert.True(done > 0, $"no preparation task was journaled complete within {Timeout}:\n{run.Output}");
            run.Kill();
        }

        using (var run = fast())
        {
            Assert.True(await run.WaitAsync(Timeout) == 0, run.Output);
            Assert.Contains("resuming:", run.Output);
        }
        var events = PreparationJournal.Read(journal, id);
        Assert.Empty(PreparationJournal.CompletedTwice(events));
        Assert.Single(events.OfType<PreparationFinished>());

        int Completed()
        {
            try
            {
                return File.Exists(journal) ? PreparationJournal.Read(journal, id).OfType<PreparationTaskCompleted>().Count() : 0;
            }
            catch (SqliteException)
            {
                return 0;   // busy while the coordinator writes, or tables not created yet: ask again
            }
        }
    }

    private static void AssertSameShards(string expected, string actual)
    {
        static Dictionary<string, byte[]> Outputs(string folder) => Directory.GetFiles(folder)
            .Where(f => !Path.GetFileName(f).StartsWith("journal.db", StringComparison.Ordinal) && !f.EndsWith(".tmp", StringComparison.Ordinal))
            .ToDictionary(f => Path.GetFileName(f), File.ReadAllBytes);
        var (a, b) = (Outputs(expected), Outputs(actual));
        Assert.Equal(a.Keys.Order(), b.Keys.Order());
        Assert.NotEmpty(a);
        Assert.All(a, kv => Assert.True(kv.Value.AsSpan().SequenceEqual(b[kv.Key]), $"{kv.Key} differs"));
    }
}
