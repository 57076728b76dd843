using System.Text.RegularExpressions;
using Pretrain.Tests.Methods;
using Xunit;
using Xunit.Abstractions;

namespace Pretrain.Tests.Elastic;

/// <summary>
/// Reproducible runs through failure (issue 12), end to end: real worker processes on loopback, a real
/// SIGKILL, a respawned newcomer. The job that lost and regained a worker ends with the bits of a run on
/// another world size that nobody hurt — the fingerprint in summary.json.
/// </summary>
public sealed class ReproducibleElasticTests(ITestOutputHelper output) : IDisposable
{
    readonly string _root = Directory.CreateTempSubdirectory("pretrain-reproducible-").FullName;

    /// <summary>The tiny GPT recipe (global batch 12) with <c>reproducible:</c> on, 6 micro-shards of 2 samples.</summary>
    string Recipe(long steps)
    {
        var path = ChaosRun.TinyRecipe(_root, steps);
        var text = Regex.Replace(File.ReadAllText(path), @"(?m)^checkpoint:", "reproducible:\n  enabled: true\n  shards: 6\ncheckpoint:");
        var reproducible = Path.Combine(_root, $"tiny-reproducible-{steps}.yaml");
        File.WriteAllText(reproducible, text);
        return reproducible;
    }

    [Fact]
    public async Task A_run_that_loses_and_regains_a_worker_ends_with_the_bits_of_an_uninterrupted_run_on_another_world_size()
    {
        var recipe = Recipe(150);
        using var clean = ChaosRun.Start(Path.Combine(_root, "clean"), recipe, 2);
        Assert.Equal(0, await clean.WaitAsync());
        var baseline = clean.Summary;
        Assert.True(baseline.Reproducible!.Enabled);
        Assert.Equal(6, baseline.Reproducible.Shards);
        Assert.NotNull(baseline.Reproducible.Fingerprint);

        // 3 workers; one is killed at step ~10 and respawned: 3 → 2 → 3, the lost step redone by the survivors.
        using var run = ChaosRun.Start(Path.Combine(_root, "kill"), recipe, 3, "--max-restarts", "3");
        await run.WaitForCheckpointAsync(10);
        run.Signal("worker-1", ChaosRun.SigKill);
        Assert.Equal(0, await run.WaitAsync());
        var s = run.Summary;
        output.WriteLine(string.Join("; ", s.Generations.Select(g => $"g{g.Number} {g.WorldSize} from {g.FirstStep} ({g.Cause})")));
        output.WriteLine($"fingerprint {s.Reproducible!.Fingerprint} vs uninterrupted {baseline.Reproducible.Fingerprint}; loss {s.FinalLoss} vs {baseline.FinalLoss}");

        Assert.Equal(["start", "lost", "joined"], s.Generations.Select(g => g.Cause));
        Assert.Equal([3, 2, 3], s.Generations.Select(g => g.WorldSize));
        Assert.Equal(150, s.Steps);
        Assert.Single(s.ReplicaChecksums.Values.Distinct());
        Assert.Equal(baseline.SampleDigest, s.SampleDigest);
        Assert.Equal(baseline.Reproducible.Fingerprint, s.Reproducible.Fingerprint);
        Assert.Equal(baseline.ReplicaChecksums["0"], s.ReplicaChecksums["0"]);
        Assert.Equal(baseline.FinalLoss, s.FinalLoss);                  // the same bits, so the same loss, not a close one
    }

    [Fact]
    public async Task SimCLR_with_global_batch_norm_on_one_worker_and_on_three_that_lose_one_ends_with_the_same_bits()
    {
        // The hardest case: the global loss and global batch norm couple every sample of the batch, and a rank's
        // shards run on concurrent threads. 8 micro-shards of 8 images; 1 worker, then 3 → 2 after a SIGKILL.
        var recipe = SmallFashionMnist.Recipe(steps: 20, checkpointEvery: 10, method: "simclr");
        var path = Path.Combine(_root, "simclr-reproducible.yaml");
        await File.WriteAllTextAsync(path, recipe.Source.Text.TrimEnd() + "\nreproducible:\n  enabled: true\n  shards: 8\n");

        using var alone = ChaosRun.Start(Path.Combine(_root, "simclr-alone"), path, 1);
        Assert.True(await alone.WaitAsync() == 0, alone.Output);
        using var run = ChaosRun.Start(Path.Combine(_root, "simclr-kill"), path, 3, "--max-restarts", "0");
        await run.WaitForCheckpointAsync(10);
        run.Signal("worker-1", ChaosRun.SigKill);
        Assert.True(await run.WaitAsync() == 0, run.Output);

        var (one, s) = (alone.Summary, run.Summary);
        output.WriteLine($"simclr: fingerprint {s.Reproducible!.Fingerprint} vs {one.Reproducible!.Fingerprint} on 1 worker; knn {s.Eval["knn_accuracy"]:0.000}");
        Assert.Equal(["start", "lost"], s.Generations.Select(g => g.Cause));
        Assert.Equal(20, s.Steps);
        Assert.NotNull(one.Reproducible.Fingerprint);
        Assert.Equal(one.Reproducible.Fingerprint, s.Reproducible.Fingerprint);
        Assert.Equal(one.FinalLoss, s.FinalLoss);
        Assert.Equal(one.Eval["knn_accuracy"], s.Eval["knn_accuracy"]);   // the same encoder evaluates the same
    }

    public void Dispose()
    {
        try { Directory.Delete(_root, recursive: true); } catch (IOException) { }
    }
}
