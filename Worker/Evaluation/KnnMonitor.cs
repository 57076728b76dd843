using TorchSharp;
using static TorchSharp.torch;

namespace Pretrain.Worker.Evaluation;

/// <summary>
/// The online kNN monitor of self-supervised vision training (InstDisc; solo-learn's default): each
/// test feature votes among its k most cosine-similar training features, each neighbour weighing
/// exp(similarity / T) for its label. k = 200, T = 0.07 are the usual settings.
/// </summary>
public static class KnnMonitor
{
    /// <summary>
    /// Accuracy of the weighted kNN vote. <paramref name="trainFeatures"/> (N, d), <paramref name="trainLabels"/>
    /// (N) int64, <paramref name="testFeatures"/> (M, d), <paramref name="testLabels"/> (M) int64.
    /// Test rows are processed in chunks so the (chunk, N) similarity matrix stays small
    /// (~48 MB at chunk 200 and N = 60,000).
    /// </summary>
    public static double Accuracy(Tensor trainFeatures, Tensor trainLabels, Tensor testFeatures, Tensor testLabels,
        int classes, int k = 200, double temperature = 0.07, int chunk = 200)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var train = nn.functional.normalize(trainFeatures, p: 2, dim: 1);                  // (N, d)
        var test = nn.functional.normalize(testFeatures, p: 2, dim: 1);                    // (M, d)
        int neighbours = (int)Math.Min(k, train.shape[0]);
        using var tau = temperature.ToScalar();   // explicit: an implicit Scalar may be finalized mid-call (see GlobalBatchNorm2d)
        long correct = 0;
        for (long start = 0; start < test.shape[0]; start += chunk)
        {
            using var inner = NewDisposeScope();
            long rows = Math.Min(chunk, test.shape[0] - start);
            var similarity = test.narrow(0, start, rows).matmul(train.t());                  // (c, N)
            var (values, indices) = similarity.topk(neighbours, dim: 1);                     // (c, k) each
            var weights = values.div(tau).exp_();                                             // (c, k)
            var labels = trainLabels.index_select(0, indices.reshape(-1)).view(rows, neighbours);   // (c, k)
            var votes = zeros(rows, classes, dtype: weights.dtype).scatter_add_(1, labels, weights); // (c, C)
            var predicted = votes.argmax(1);                                                  // (c)
            correct += predicted.eq(testLabels.narrow(0, start, rows)).sum().item<long>();
        }
        return (double)correct / test.shape[0];
    }
}
