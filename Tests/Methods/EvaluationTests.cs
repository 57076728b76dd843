using Pretrain.Worker.Evaluation;
using Xunit;
using static TorchSharp.torch;

namespace Pretrain.Tests.Methods;

public class EvaluationTests
{
    /// <summary>Gaussian clusters around distinct centres: class c near centre c.</summary>
    static (Tensor Features, Tensor Labels) Clusters(int perClass, int classes, int dimension, double spread, ulong seed)
    {
        var g = new Generator(seed);
        var centres = randn(classes, dimension, generator: new Generator(99)) * 3;
        var labels = arange(classes, dtype: int64).repeat_interleave(perClass);
        var features = centres.index_select(0, labels) + randn(classes * perClass, dimension, generator: g) * spread;
        return (features, labels);
    }

    [Fact]
    public void The_kNN_vote_weights_neighbours_by_exp_of_similarity_over_temperature()
    {
        // Test point (1, 0). Neighbours: one of class 0 at cosine 1.0, two of class 1 at cosine 0.6.
        // Weights: class 0 e^(1/0.07) = e^14.3 ≫ class 1 2·e^(0.6/0.07) = 2·e^8.6 → class 0 wins,
        // although a plain majority of the 3 neighbours is class 1.
        using var train = tensor(new float[] { 1, 0, 0.6f, 0.8f, 0.6f, -0.8f }).reshape(3, 2);
        using var trainLabels = tensor(new long[] { 0, 1, 1 });
        using var test = tensor(new float[] { 1, 0 }).reshape(1, 2);
        Assert.Equal(1.0, KnnMonitor.Accuracy(train, trainLabels, test, tensor(new long[] { 0 }), classes: 2, k: 3));
        // With a high temperature the weights flatten and the majority wins.
        Assert.Equal(0.0, KnnMonitor.Accuracy(train, trainLabels, test, tensor(new long[] { 0 }), classes: 2, k: 3, temperature: 100));
    }

    [Fact]
    public void The_kNN_monitor_recognises_separated_clusters_and_not_noise()
    {
        var (train, trainLabels) = Clusters(100, 5, 16, 0.5, 1);
        var (test, testLabels) = Clusters(20, 5, 16, 0.5, 2);
        Assert.True(KnnMonitor.Accuracy(train, trainLabels, test, testLabels, classes: 5, chunk: 7) > 0.95);
        var noise = randn(100, 16, generator: new Generator(3));
        Assert.True(KnnMonitor.Accuracy(train, trainLabels, noise, arange(100, dtype: int64) % 5, classes: 5) < 0.5);
    }

    [Fact]
    public void A_linear_probe_learns_a_linearly_separable_problem_deterministically()
    {
        var (train, trainLabels) = Clusters(100, 4, 8, 0.7, 4);
        var (test, testLabels) = Clusters(25, 4, 8, 0.7, 5);
        var probe = new LinearProbe(Epochs: 20, BatchSize: 64, LearningRate: 0.01, Seed: 1);
        double first = probe.Accuracy(train, trainLabels, test, testLabels, classes: 4);
        Assert.True(first > 0.9, $"accuracy {first}");
        Assert.Equal(first, probe.Accuracy(train, trainLabels, test, testLabels, classes: 4));
    }
}
