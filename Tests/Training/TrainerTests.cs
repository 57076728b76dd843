using System.Diagnostics;
using Pretrain.Shared.Recipes;
using Pretrain.Worker.Collectives;
using Pretrain.Worker.Training;
using Xunit;

namespace Pretrain.Tests.Training;

public class TrainerTests
{
    /// <param name="reportedAt">When given, receives the <see cref="Stopwatch"/> timestamp of each step's report, taken on the training thread as it reports.</param>
    internal static async Task<(TrainingResult Result, List<StepReport> Steps)> Train(
        Recipe recipe, string runDirectory, long maxSteps = long.MaxValue, bool resume = false, List<string>? log = null, List<long>? reportedAt = null)
    {
        var steps = new List<StepReport>();
        using var trainer = new Trainer(recipe, 0, 1, new SingleRank(), runDirectory, m => log?.Add(m));
        var progress = new SynchronousProgress<StepReport>(s =>
        {
            reportedAt?.Add(Stopwatch.GetTimestamp());
            steps.Add(s);
        });
        var result = await trainer.RunAsync(maxSteps, resume, progress, CancellationToken.None);
        return (result, steps);
    }

    [Fact]
    public async Task Loss_decreases_over_30_steps_on_the_KJV_text()
    {
        var recipe = TestRecipes.Tiny();
        var reportedAt = new List<long>();
        var started = Stopwatch.GetTimestamp();
        var (result, steps) = await Train(recipe, TestRecipes.TemporaryDirectory(), reportedAt: reportedAt);
        Assert.Equal(30, result.Step);
        Assert.Equal(30, steps.Count);

        // The first step runs on the initial weights: N(0, 0.02) embeddings under a tied head give logits within a few
        // tenths of 0, a uniform guess over 256 bytes, whose cross-entropy is ln 256 = 5.545 whatever the text.
        Assert.InRange(steps[0].Loss, Math.Log(256) - 0.2, Math.Log(256) + 0.2);
        Assert.Equal(steps[0].Loss, result.FirstLoss);
        var first = steps.Take(3).Average(s => s.Loss);
        var last = steps.TakeLast(3).Average(s => s.Loss);
        Assert.True(last < first - 1.5, $"loss went from {first} to {last}");   // ~3.2 after 30 steps
        Assert.True(result.Eval["val_loss"] < first - 1.0, $"val_loss {result.Eval["val_loss"]} after a first loss of {first}");
        Assert.Equal(result.Eval["val_loss"] / Math.Log(2), result.Eval["bits_per_byte"], 9);
        Assert.Matches("^[0-9a-f]{16}$", result.ReplicaChecksum);

        // Throughput, checked against this test's own clock. A step's time is global batch / its samples per second.
        double global = recipe.Batch.Global;
        var stepSeconds = steps.Select(s => global / s.SamplesPerSecond).ToArray();
        // The run's figure is its samples over the steps' summed time: the harmonic mean of the steps' figures.
        double expected = steps.Count * global / stepSeconds.Sum();
        Assert.True(Math.Abs(result.SamplesPerSecond - expected) <= 1e-9 * expected, $"run {result.SamplesPerSecond} samples/s, its steps' {expected}");
        // Each step ran between the report before it (or the start) and its own report, so its time is at most the
        // gap between those two reports as this test timed them: a step that timed something beyond itself fails here.
        double Gap(int i) => Stopwatch.GetElapsedTime(i == 0 ? started : reportedAt[i - 1], reportedAt[i]).TotalSeconds;
        for (var i = 0; i < steps.Count; i++)
            Assert.True(stepSeconds[i] <= Gap(i) + 1e-6, $"step {i + 1} says it took {stepSeconds[i]:0.0000} s, but its reports were {Gap(i):0.0000} s apart");
        // And the steps are most of those gaps: between one report and the next step's start there is only bookkeeping,
        // except after a checkpoint (its snapshot copy). Half holds on any load; a step timing only part of itself fails.
        var plain = Enumerable.Range(1, steps.Count - 1).Where(i => steps[i - 1].Step % recipe.Checkpoint.Every != 0).ToList();
        double timed = plain.Sum(i => stepSeconds[i]), between = plain.Sum(i => Gap(i));
        Assert.True(timed >= 0.5 * between, $"the steps timed {timed:0.000} s of the {between:0.000} s between their reports");
    }

    [Fact]
    public async Task Same_recipe_twice_gives_the_same_replica_checksum()
    {
        var recipe = TestRecipes.Tiny(t => TestRecipes.Set(t, "steps", "6"));
        var a = await Train(recipe, TestRecipes.TemporaryDirectory());
        var b = await Train(recipe, TestRecipes.TemporaryDirectory());
        Assert.Equal(a.Result.ReplicaChecksum, b.Result.ReplicaChecksum);
        Assert.Equal(a.Steps.Select(s => s.Loss), b.Steps.Select(s => s.Loss));
        var other = await Train(TestRecipes.Tiny(t => TestRecipes.Set(TestRecipes.Set(t, "steps", "6"), "seed", "1")), TestRecipes.TemporaryDirectory());
        Assert.NotEqual(a.Result.ReplicaChecksum, other.Result.ReplicaChecksum);
    }

    [Fact]
    public async Task Dropout_runs_are_reproducible_because_dropout_is_seeded_per_step_and_rank()
    {
        var recipe = TestRecipes.Tiny(t => TestRecipes.Set(TestRecipes.Set(t, "steps", "6"), "dropout", "0.2"));
        var a = await Train(recipe, TestRecipes.TemporaryDirectory());
        var b = await Train(recipe, TestRecipes.TemporaryDirectory());
        Assert.Equal(a.Result.ReplicaChecksum, b.Result.ReplicaChecksum);
    }

    [Fact]
    public async Task Max_steps_stops_early_but_the_schedule_still_spans_the_recipe_steps()
    {
        var (result, steps) = await Train(TestRecipes.Tiny(), TestRecipes.TemporaryDirectory(), maxSteps: 6);
        Assert.Equal(6, result.Step);
        Assert.Equal(new LrSchedule(0.003, 0.0003, 5, 30).At(5), steps[^1].LearningRate, 12);
    }

    [Fact]
    public async Task Divergent_loss_stops_with_an_error_naming_the_step_and_keeps_the_last_good_checkpoint()
    {
        var run = TestRecipes.TemporaryDirectory();
        var recipe = TestRecipes.Tiny(t => TestRecipes.Set(TestRecipes.Set(TestRecipes.Set(TestRecipes.Set(t,
            "lr", "1e30"), "min_lr", "1e30"), "warmup_steps", "0"), "every", "1"));
        var e = await Assert.ThrowsAsync<TrainingDivergedException>(() => Train(recipe, run));
        Assert.Contains($"at step {e.Step}", e.Message);
        Assert.Contains(Path.Combine(run, "checkpoints", $"step-{e.Step:D8}"), e.Message); // written after step e.Step
        Assert.NotNull(new Pretrain.Worker.Training.Checkpoints.CheckpointStore(run, _ => { }).FindNewest(recipe.Source.Hash));
    }

    [Fact]
    public async Task With_on_nonfinite_loss_skip_divergent_steps_are_counted_and_dropped_and_the_run_ends()
    {
        var recipe = TestRecipes.Tiny(t => TestRecipes.Set(TestRecipes.Set(TestRecipes.Set(TestRecipes.Set(TestRecipes.Set(t,
            "lr", "1e30"), "min_lr", "1e30"), "warmup_steps", "0"), "steps", "8"), "seed", "1337\non_nonfinite_loss: skip"));
        var skippedBefore = Pretrain.Shared.Telemetry.PretrainMetrics.SkippedStepsTotal.Value;
        var log = new List<string>();
        var (result, steps) = await Train(recipe, TestRecipes.TemporaryDirectory(), log: log);

        Assert.Equal(8, result.Step);                                        // the run went on to the end
        // Step 1 runs on the initial weights (a uniform guess: ln 256) and applies its update with lr 1e30: every weight
        // it moves becomes ~1e30, so every later forward overflows. Skipped steps change no weight: steps 2-8 all skip.
        Assert.InRange(steps[0].Loss, Math.Log(256) - 0.2, Math.Log(256) + 0.2);
        Assert.True(double.IsFinite(steps[0].GradientNorm), $"step 1's gradient norm is {steps[0].GradientNorm}");
        var skippedSteps = steps.Where(s => !double.IsFinite(s.Loss) || !double.IsFinite(s.GradientNorm)).Select(s => s.Step);
        Assert.Equal([2L, 3L, 4L, 5L, 6L, 7L, 8L], skippedSteps);
        var skipped = skippedSteps.Count();
        Assert.Equal(skipped, Pretrain.Shared.Telemetry.PretrainMetrics.SkippedStepsTotal.Value - skippedBefore);
        Assert.Equal(skipped, log.Count(l => l.Contains("update skipped (on_nonfinite_loss: skip)")));
    }

    /// <summary>
    /// Trains <paramref name="worldSize"/> ranks in this process over a real loopback ring; counts each
    /// rank's allreduce calls into <paramref name="allReduces"/> when given.
    /// </summary>
    internal static async Task<TrainingResult[]> TrainRing(Recipe recipe, int worldSize, int[]? allReduces = null)
    {
        await using var harness = new Pretrain.Tests.Collectives.RingHarness(worldSize);
        var ring = await harness.ConnectAsync(1);
        var run = TestRecipes.TemporaryDirectory();
        return await Task.WhenAll(Enumerable.Range(0, worldSize).Select(async rank =>
        {
            ICollectives collectives = allReduces is null ? ring[rank] : new CountingCollectives(ring[rank], () => Interlocked.Increment(ref allReduces[rank]));
            using var trainer = new Trainer(recipe, rank, worldSize, collectives, run, _ => { });
            return await trainer.RunAsync(long.MaxValue, false, null, CancellationToken.None);
        }));
    }

    [Fact]
    public async Task Two_workers_match_one_worker_with_the_same_global_batch()
    {
        var recipe = TestRecipes.Tiny(t => TestRecipes.Set(t, "steps", "5"));
        var single = await Train(recipe, TestRecipes.TemporaryDirectory());
        var results = await TrainRing(recipe, 2);
        Assert.Equal(results[0].ReplicaChecksum, results[1].ReplicaChecksum);      // replicas identical
        Assert.Equal(results[0].FinalLoss, results[1].FinalLoss);                  // both report the global mean
        Assert.Equal(single.Result.FinalLoss, results[0].FinalLoss, 3);            // same global batch ⇒ same training
        Assert.Equal(single.Result.Eval["val_loss"], results[0].Eval["val_loss"], 3);
    }

    [Fact]
    public async Task Two_workers_that_reduce_a_bucket_while_backward_goes_on_match_one_worker()
    {
        // Width 256: ~1.6 M parameters; the last block's 1 MiB MLP projection is the first bucket, started from its mark.
        var recipe = TestRecipes.Tiny(t => TestRecipes.Set(TestRecipes.Set(TestRecipes.Set(t, "steps", "3"), "warmup_steps", "1"), "width", "256"));
        var single = await Train(recipe, TestRecipes.TemporaryDirectory());
        var results = await TrainRing(recipe, 2);
        Assert.Equal(results[0].ReplicaChecksum, results[1].ReplicaChecksum);
        Assert.Equal(single.Result.FinalLoss, results[0].FinalLoss, 3);
    }
}

public class GradientAccumulationTests
{
    [Fact]
    public async Task Accumulating_two_micro_steps_trains_like_one_full_batch()
    {
        var recipe = TestRecipes.Tiny(t => TestRecipes.Set(t, "steps", "5"));
        var whole = await TrainerTests.Train(recipe, TestRecipes.TemporaryDirectory());
        var accumulated = await TrainerTests.Train(TestRecipes.Tiny(t => TestRecipes.Set(TestRecipes.Set(t, "steps", "5"), "global", "12\n  accumulation: 2")),
            TestRecipes.TemporaryDirectory());
        Assert.Equal(whole.Steps.Select(s => s.Loss), accumulated.Steps.Select(s => s.Loss), (a, b) => Math.Abs(a - b) < 1e-4);
        Assert.Equal(whole.Result.Eval["val_loss"], accumulated.Result.Eval["val_loss"], 3);
    }

    [Fact]
    public async Task Gradients_cross_the_network_once_per_step_whatever_the_micro_steps()
    {
        var recipe = TestRecipes.Tiny(t => TestRecipes.Set(TestRecipes.Set(t, "steps", "5"), "global", "12\n  accumulation: 3"));
        var plain = TestRecipes.Tiny(t => TestRecipes.Set(t, "steps", "5"));
        var counted = new int[2];
        var accumulated = await TrainerTests.TrainRing(recipe, 2, counted);
        var once = new int[2];
        var single = await TrainerTests.TrainRing(plain, 2, once);
        Assert.Equal(once, counted);                       // 3 micro-steps: no more allreduces than 1
        Assert.Equal(accumulated[0].ReplicaChecksum, accumulated[1].ReplicaChecksum);
        Assert.Equal(single[0].FinalLoss, accumulated[0].FinalLoss, 3);
    }
}

/// <summary>IProgress that reports on the caller's thread (Progress&lt;T&gt; posts to the thread pool).</summary>
public sealed class SynchronousProgress<T>(Action<T> report) : IProgress<T>
{
    public void Report(T value) => report(value);
}

/// <summary>A real communicator that counts its allreduce calls.</summary>
internal sealed class CountingCollectives(ICollectives inner, Action onAllReduce) : ICollectives
{
    public long Generation => inner.Generation;
    public int Rank => inner.Rank;
    public int WorldSize => inner.WorldSize;

    public Task AllReduceSumAsync(Memory<float> data, CancellationToken ct = default)
    {
        onAllReduce();
        return inner.AllReduceSumAsync(data, ct);
    }

    public Task AllReduceSumAsync(Memory<long> data, CancellationToken ct = default)
    {
        onAllReduce();
        return inner.AllReduceSumAsync(data, ct);
    }

    public Task AllGatherAsync(ReadOnlyMemory<float> local, Memory<float> result, CancellationToken ct = default) => inner.AllGatherAsync(local, result, ct);
    public Task BroadcastAsync(Memory<byte> data, int root, CancellationToken ct = default) => inner.BroadcastAsync(data, root, ct);
    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}
