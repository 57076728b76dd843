using Pretrain.Shared.Recipes;
using Pretrain.Tests.Training;
using Pretrain.Worker.Training;
using Xunit;

namespace Pretrain.Tests.Methods;

public class SimClrMethodTests
{
    [Fact]
    public async Task Two_workers_lower_the_NT_Xent_loss_with_identical_replicas_and_learn_features_that_beat_chance()
    {
        var recipe = SmallFashionMnist.Recipe(steps: 30, method: "simclr");
        var (results, losses) = await SmallFashionMnist.TrainRing(recipe, TestRecipes.TemporaryDirectory(), long.MaxValue, resume: false);

        Assert.Equal(results[0].ReplicaChecksum, results[1].ReplicaChecksum);
        var first = losses.Take(3).Average();        // ≈ ln(2·64 − 1) = 4.84 for random embeddings
        var last = losses.TakeLast(3).Average();
        Assert.True(last < first - 0.3, $"NT-Xent went from {first:F3} to {last:F3}; losses: {string.Join(", ", losses.Select(l => l.ToString("F2")))}");
        Assert.Equal(results[0].Eval["knn_accuracy"], results[1].Eval["knn_accuracy"]);
        Assert.True(results[0].Eval["knn_accuracy"] > 0.4, $"kNN accuracy {results[0].Eval["knn_accuracy"]} (chance 0.1)");
    }
}
