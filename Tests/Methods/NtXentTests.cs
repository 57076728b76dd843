using Pretrain.Worker.Collectives;
using Pretrain.Worker.Methods;
using Pretrain.Tests.Collectives;
using Pretrain.Worker.Methods.Contrastive;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Pretrain.Tests.Methods;

/// <summary>SimCLR's loss against a straightforward computation, and over 2 workers against 1.</summary>
public class NtXentTests
{
    const int N = 8, In = 6, Out = 4;
    const double Temperature = 0.5;

    /// <summary>NT-Xent written out in double precision, loop by loop, as the paper defines it.</summary>
    static double Reference(float[,] z1, float[,] z2)
    {
        var rows = new List<double[]>();
        foreach (var z in new[] { z1, z2 })
            for (var i = 0; i < N; i++)
            {
                var r = Enumerable.Range(0, Out).Select(j => (double)z[i, j]).ToArray();
                var norm = Math.Sqrt(r.Sum(x => x * x));
                rows.Add(r.Select(x => x / norm).ToArray());
            }
        double total = 0;
        for (var a = 0; a < 2 * N; a++)
        {
            var positive = a < N ? a + N : a - N;
            double Sim(int b) => rows[a].Zip(rows[b]).Sum(p => p.Item1 * p.Item2) / Temperature;
            var denominator = Enumerable.Range(0, 2 * N).Where(b => b != a).Sum(b => Math.Exp(Sim(b)));
            total += -Math.Log(Math.Exp(Sim(positive)) / denominator);
        }
        return total / (2 * N);
    }

    static (Tensor X1, Tensor X2) Inputs()
    {
        var g = new Generator(7);
        return (randn(N, In, generator: g), randn(N, In, generator: g));
    }

    static TorchSharp.Modules.Linear Projection()
    {
        var g = new Generator(11);
        var layer = nn.Linear(In, Out);
        using (no_grad())
        {
            layer.weight!.copy_(randn(Out, In, generator: g));
            layer.bias!.copy_(randn(Out, generator: g));
        }
        return layer;
    }

    [Fact]
    public void NT_Xent_matches_the_formula()
    {
        var (x1, x2) = Inputs();
        using var z1 = x1 * 0.7;
        using var z2 = x2 * 0.7 + 0.3;
        var narrow1 = z1.narrow(1, 0, Out); var narrow2 = z2.narrow(1, 0, Out);
        using var loss = NtXent.Loss(narrow1, narrow2, Temperature);
        var a = new float[N, Out]; var b = new float[N, Out];
        for (var i = 0; i < N; i++) for (var j = 0; j < Out; j++) { a[i, j] = narrow1[i, j].item<float>(); b[i, j] = narrow2[i, j].item<float>(); }
        Assert.Equal(Reference(a, b), loss.item<float>(), 5);
    }

    [Fact]
    public async Task NT_Xent_over_two_workers_equals_NT_Xent_over_the_same_global_batch_on_one()
    {
        var (x1, x2) = Inputs();
        // One worker, whole batch.
        using var single = Projection();
        using var singleLoss = NtXent.Loss(single.forward(x1), single.forward(x2), Temperature);
        singleLoss.backward();
        var expectedWeight = single.weight!.grad!.clone();
        var expectedBias = single.bias!.grad!.clone();

        // Two workers over real loopback sockets, each with half of the batch.
        await using var harness = new RingHarness(2);
        var ring = await harness.ConnectAsync(generation: 1);
        var results = await Task.WhenAll(Enumerable.Range(0, 2).Select(rank => Task.Factory.StartNew(() =>
        {
            using var model = Projection();
            var half1 = x1.narrow(0, rank * N / 2, N / 2);
            var half2 = x2.narrow(0, rank * N / 2, N / 2);
            var loss = new DistributedNtXent(Temperature)
                .ForwardBackwardAsync(model.forward(half1), model.forward(half2), new MicroBatch(0, 0, 1, new long[N / 2], N), new HostCommunicator(ring[rank]))
                .GetAwaiter().GetResult();
            return (Loss: loss, Weight: model.weight!.grad!.clone(), Bias: model.bias!.grad!.clone());
        }, TaskCreationOptions.LongRunning)));

        // Each rank returns its share of the global loss, normalised by the global sample count; the shares sum to it.
        Assert.Equal(singleLoss.item<float>(), results[0].Loss + results[1].Loss, 5);
        Assert.All(results, r => Assert.True(r.Loss > 0 && r.Loss < singleLoss.item<float>() - 1e-3, $"share {r.Loss} is not a part of the loss"));
        // Data parallelism sums the ranks' gradients; that sum must be the global gradient.
        using var weight = results[0].Weight + results[1].Weight;
        using var bias = results[0].Bias + results[1].Bias;
        Assert.True((weight - expectedWeight).abs().max().item<float>() <= 1e-5, $"weight gradient differs by {(weight - expectedWeight).abs().max().item<float>():E2}");
        Assert.True((bias - expectedBias).abs().max().item<float>() <= 1e-5, $"bias gradient differs by {(bias - expectedBias).abs().max().item<float>():E2}");
        // Not trivially equal: each rank's own gradient is only part of the global one.
        Assert.True((results[0].Weight - expectedWeight).abs().max().item<float>() > 1e-4);
    }
}
