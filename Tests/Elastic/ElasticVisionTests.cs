using Pretrain.Tests.Methods;
using Xunit;
using Xunit.Abstractions;

namespace Pretrain.Tests.Elastic;

/// <summary>
/// SimCLR (global batch norm, negatives from every worker), MoCo (queue, key network, shuffle BN), BYOL (target
/// network averaged on every rank, global batch norm) and MAE (masks keyed by sample, so the survivors redo the lost
/// step with the same ones) survive a SIGKILL: their method state crosses to the survivors' generation intact and the
/// replicas agree (for BYOL the replica checksum covers the target network). Three
/// workers share the batch of 64 unevenly (21, 21, 22), two evenly afterwards.
/// </summary>
public sealed class ElasticVisionTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData("simclr")]
    [InlineData("moco")]
    [InlineData("byol")]
    [InlineData("mae")]
    public async Task A_vision_method_survives_a_killed_worker_with_its_state_and_equal_replicas(string method)
    {
        var root = Directory.CreateTempSubdirectory($"pretrain-elastic-{method}-").FullName;
        try
        {
            var recipe = SmallFashionMnist.Recipe(steps: 30, checkpointEvery: 10, method);
            var path = Path.Combine(root, $"{method}.yaml");
            await File.WriteAllTextAsync(path, recipe.Source.Text);
            using var run = ChaosRun.Start(Path.Combine(root, "run"), path, 3, "--max-restarts", "0");
            await run.WaitForCheckpointAsync(10);
            run.Signal("worker-1", ChaosRun.SigKill);
            Assert.True(await run.WaitAsync() == 0, run.Output);

            var s = run.Summary;
            output.WriteLine($"{method}: loss {s.FirstLoss:0.000} → {s.FinalLoss:0.000}, knn {s.Eval["knn_accuracy"]:0.000}, recovery {s.MaxRecoverySeconds:0.00} s");
            Assert.Equal(30, s.Steps);
            Assert.Equal(["start", "lost"], s.Generations.Select(g => g.Cause));
            Assert.Equal(2, s.WorldSize);
            Assert.Single(s.ReplicaChecksums.Values.Distinct());
            Assert.Equal(ChaosRun.Digest(recipe.Seed, 2000, recipe.Batch.Global, 30), s.SampleDigest);
            Assert.InRange(s.Eval["knn_accuracy"], 0.3, 1.0);                    // chance is 0.1: the state that crossed still encodes
        }
        finally
        {
            try { Directory.Delete(root, recursive: true); } catch (IOException) { }
        }
    }
}
