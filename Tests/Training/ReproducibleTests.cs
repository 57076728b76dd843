using Pretrain.Shared.Recipes;
using Pretrain.Tests.Collectives;
using Pretrain.Tests.Methods;
using Pretrain.Worker.Collectives;
using Pretrain.Worker.Training;
using Xunit;
using Xunit.Abstractions;

namespace Pretrain.Tests.Training;

/// <summary>
/// Reproducible runs: the same recipe and seed end with the same replica checksum, bit for bit, on 1, 2, 3
/// and 4 ranks of a real loopback TCP ring (6 micro-shards: 4 ranks hold 1, 2, 1, 2 of them) — and, the
/// negative control that keeps the test honest, the fast path does not.
/// </summary>
public class ReproducibleTests(ITestOutputHelper output)
{
    public static TheoryData<string> Methods => ["gpt", "bert", "simclr", "simclr-shard-bn", "moco", "byol", "byol-shard-bn", "mae"];

    [Theory]
    [MemberData(nameof(Methods))]
    public async Task The_same_recipe_ends_with_the_same_checksum_on_1_2_3_and_4_workers(string method)
    {
        var recipe = ReproducibleRecipes.Short(method, reproducible: true);
        var checksums = new List<string>();
        foreach (var world in new[] { 1, 2, 3, 4 })
        {
            var results = await ReproducibleRecipes.TrainRing(recipe, world);
            Assert.All(results, r => Assert.Equal(results[0].ReplicaChecksum, r.ReplicaChecksum)); // replicas agree within a run
            output.WriteLine($"{method}, {world} worker(s): checksum {results[0].ReplicaChecksum}, loss {results[0].FinalLoss:F6}");
            checksums.Add(results[0].ReplicaChecksum);
        }
        Assert.All(checksums, c => Assert.Equal(checksums[0], c));
    }

    [Theory]
    [MemberData(nameof(Methods))]
    public async Task Without_reproducible_the_world_size_changes_the_bits(string method)
    {
        var recipe = ReproducibleRecipes.Short(method, reproducible: false);
        var one = await ReproducibleRecipes.TrainRing(recipe, 1);
        var three = await ReproducibleRecipes.TrainRing(recipe, 3);
        output.WriteLine($"{method}: {one[0].ReplicaChecksum} on 1 worker, {three[0].ReplicaChecksum} on 3");
        Assert.NotEqual(one[0].ReplicaChecksum, three[0].ReplicaChecksum);
    }
}

/// <summary>Short real-data recipes of every method with and without <c>reproducible:</c>, and a ring to train them on.</summary>
internal static class ReproducibleRecipes
{
    public const int Shards = 6;

    public static Recipe Short(string method, bool reproducible, int steps = 4)
    {
        var section = reproducible ? $"reproducible:\n  enabled: true\n  shards: {Shards}\n" : "";
        if (method is "gpt" or "bert")
            return TestRecipes.Tiny(text => TestRecipes.Set(TestRecipes.Set(TestRecipes.Set(text, "steps", steps.ToString()), "warmup_steps", "1"), "method", method) + section);
        var vision = SmallFashionMnist.Recipe(steps, method: method.Replace("-shard-bn", ""));
        var text = vision.Source.Text.Replace("global: 64", "global: 24").Replace("queue_size: 512", "queue_size: 96") + "\n" + section;
        if (method == "simclr-shard-bn") text = text.Replace("simclr:\n", "simclr:\n  global_batch_norm: false\n");  // batch norm per micro-shard
        if (method == "byol-shard-bn") text = text.Replace("byol:\n", "byol:\n  global_batch_norm: false\n");
        return RecipeLoader.Parse(text, vision.Source.Path);
    }

    /// <summary>Trains <paramref name="recipe"/> on <paramref name="world"/> ranks of a loopback ring (one rank: no ring) in a fresh run directory.</summary>
    public static async Task<TrainingResult[]> TrainRing(Recipe recipe, int world)
    {
        var run = TestRecipes.TemporaryDirectory();
        if (world == 1)
        {
            using var alone = new Trainer(recipe, 0, 1, new SingleRank(), run, _ => { });
            return [await alone.RunAsync(recipe.Steps, resume: false, null, CancellationToken.None)];
        }
        await using var harness = new RingHarness(world);
        var ring = await harness.ConnectAsync(1);
        return await Task.WhenAll(Enumerable.Range(0, world).Select(async rank =>
        {
            using var trainer = new Trainer(recipe, rank, world, ring[rank], run, _ => { });
            return await trainer.RunAsync(recipe.Steps, resume: false, null, CancellationToken.None);
        }));
    }
}
