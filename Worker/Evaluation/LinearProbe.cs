using TorchSharp;
using static TorchSharp.torch;

namespace Pretrain.Worker.Evaluation;

/// <summary>
/// The linear evaluation protocol: a linear classifier trained on frozen features, reported as test
/// accuracy. Features are standardized with the training set's mean and deviation, and the classifier
/// is trained with Adam on mini-batches for a fixed number of epochs from a fixed seed, so the same
/// features always give the same accuracy. The same probe on raw pixels is the baseline a
/// representation must beat.
/// </summary>
public sealed record LinearProbe(int Epochs = 10, int BatchSize = 256, double LearningRate = 1e-3, double WeightDecay = 1e-4, long Seed = 0)
{
    public double Accuracy(Tensor trainFeatures, Tensor trainLabels, Tensor testFeatures, Tensor testLabels, int classes)
    {
        using var scope = NewDisposeScope();
        var mean = trainFeatures.mean([0L], keepdim: true);                                  // (1, d)
        using var floor = 1e-6.ToScalar();   // explicit: an implicit Scalar may be finalized mid-call (see GlobalBatchNorm2d)
        var std = trainFeatures.std(0, keepdim: true).clamp_min(floor);                       // (1, d)
        var train = (trainFeatures - mean) / std;                                             // (N, d)
        var test = (testFeatures - mean) / std;                                               // (M, d)
        using var generator = new Generator((ulong)Seed);
        using var classifier = nn.Linear(train.shape[1], classes);
        using (no_grad())
        {
            classifier.weight!.normal_(0, 0.01, generator);
            classifier.bias!.zero_();
        }
        using var optimizer = optim.Adam(classifier.parameters(), lr: LearningRate, weight_decay: WeightDecay);
        long n = train.shape[0];
        for (int epoch = 0; epoch < Epochs; epoch++)
        {
            using var order = randperm(n, generator: generator);
            for (long start = 0; start < n; start += BatchSize)
            {
                using var step = NewDisposeScope();
                var batch = order.narrow(0, start, Math.Min(BatchSize, n - start));
                var loss = nn.functional.cross_entropy(classifier.forward(train.index_select(0, batch)), trainLabels.index_select(0, batch));
                optimizer.zero_grad();
                loss.backward();
                optimizer.step();
            }
        }
        using var noGrad = no_grad();
        var predicted = classifier.forward(test).argmax(1);
        return predicted.eq(testLabels).to_type(float64).mean().item<double>();
    }
}
