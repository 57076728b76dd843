using Pretrain.Tests.Collectives;
using Pretrain.Worker.Collectives;
using Pretrain.Worker.Models.Layers;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Pretrain.Tests.Methods;

/// <summary>
/// Global batch norm on 2 workers (real loopback ring), each holding half of a batch, against PyTorch's
/// own BatchNorm2d holding the whole batch on one: outputs, gradients and running statistics.
/// </summary>
public class GlobalBatchNormTests
{
    const int N = 6, C = 3, H = 4, W = 5;
    const float Tolerance = 1e-5f;

    /// <summary>A batch whose halves differ (rank 1's is shifted and wider), so per-worker statistics would be far off.</summary>
    static Tensor Inputs()
    {
        using var generator = new Generator(7);
        var x = randn([N, C, H, W], generator: generator);
        x.narrow(0, N / 2, N / 2).mul_(2).add_(1.5);
        return x;
    }

    /// <summary>A non-linear function of the normalised output, summed per sample: the loss is its mean over the samples held.</summary>
    static Tensor Loss(Tensor y)
    {
        using var generator = new Generator(11);
        using var r = randn([C, H, W], generator: generator);
        using var s = rand([C, H, W], generator: generator);
        return ((y * r) + 0.5 * y.square() * s).sum([1L, 2L, 3L]).mean();
    }

    static float MaxDifference(Tensor a, Tensor b) => (a - b).abs().max().item<float>();

    [Fact]
    public void Parameter_and_buffer_names_are_BatchNorm2d_s_so_checkpoints_move_between_them()
    {
        using var reference = nn.BatchNorm2d(C);
        using var global = new GlobalBatchNorm2d(C, new BlockingReplicaSum(new HostCommunicator(new SingleRank()), TimeSpan.FromSeconds(5)));
        Assert.Equal(reference.named_parameters().Select(p => p.name).Order(), global.named_parameters().Select(p => p.name).Order());
        Assert.Equal(reference.named_buffers().Select(b => b.name).Order(), global.named_buffers().Select(b => b.name).Order());
    }

    [Fact]
    public async Task Two_workers_with_half_a_batch_each_match_BatchNorm2d_over_the_whole_batch_on_one()
    {
        using var x = Inputs();

        // One worker, the whole batch, PyTorch's batch norm.
        using var reference = nn.BatchNorm2d(C);
        using (no_grad()) { reference.weight!.copy_(linspace(0.5, 1.5, C)); reference.bias!.copy_(linspace(-0.2, 0.2, C)); }
        using var xAll = x.clone().requires_grad_(true);
        using var yAll = reference.forward(xAll);
        using var lossAll = Loss(yAll);
        lossAll.backward();

        // Two workers over real loopback sockets.
        await using var harness = new RingHarness(2);
        var ring = await harness.ConnectAsync(generation: 1);
        var ranks = await Task.WhenAll(Enumerable.Range(0, 2).Select(rank => Task.Factory.StartNew(() =>
        {
            var replicas = new BlockingReplicaSum(new HostCommunicator(ring[rank]), TimeSpan.FromSeconds(30));
            using var norm = new GlobalBatchNorm2d(C, replicas);
            using (no_grad()) { norm.named_parameters().First(p => p.name == "weight").parameter.copy_(linspace(0.5, 1.5, C)); norm.named_parameters().First(p => p.name == "bias").parameter.copy_(linspace(-0.2, 0.2, C)); }
            var xLocal = x.narrow(0, rank * N / 2, N / 2).clone().requires_grad_(true);
            var y = norm.forward(xLocal);
            Loss(y).backward();
            replicas.ThrowIfFailed();
            var parameters = norm.named_parameters().ToDictionary(p => p.name, p => p.parameter.grad!.clone());
            var buffers = norm.named_buffers().ToDictionary(b => b.name, b => b.buffer.clone());
            return (Output: y.detach().clone(), InputGrad: xLocal.grad!.clone(), Parameters: parameters, Buffers: buffers);
        }, TaskCreationOptions.LongRunning)));

        for (var rank = 0; rank < 2; rank++)
        {
            var (output, inputGrad, _, buffers) = ranks[rank];
            Assert.True(MaxDifference(output, yAll.narrow(0, rank * N / 2, N / 2)) <= Tolerance, $"rank {rank}: output differs by {MaxDifference(output, yAll.narrow(0, rank * N / 2, N / 2)):E2}");
            // Each rank backpropagates its own mean loss; the global objective is their average, so a
            // rank's input gradient is W times the global one (and the parameter gradients average to it).
            using var expected = xAll.grad!.narrow(0, rank * N / 2, N / 2) * 2;
            Assert.True(MaxDifference(inputGrad, expected) <= Tolerance, $"rank {rank}: input gradient differs by {MaxDifference(inputGrad, expected):E2}");
            Assert.True(MaxDifference(buffers["running_mean"], reference.running_mean!) <= Tolerance, $"rank {rank}: running mean");
            Assert.True(MaxDifference(buffers["running_var"], reference.running_var!) <= Tolerance, $"rank {rank}: running variance");
            Assert.Equal(1L, buffers["num_batches_tracked"].item<long>());
        }
        foreach (var name in new[] { "weight", "bias" })
        {
            using var average = (ranks[0].Parameters[name] + ranks[1].Parameters[name]) / 2;
            using var expected = name == "weight" ? reference.weight!.grad! : reference.bias!.grad!;
            Assert.True(MaxDifference(average, expected) <= Tolerance, $"{name} gradient differs by {MaxDifference(average, expected):E2}");
        }

        // Not trivially equal: batch norm over one half alone normalises differently.
        using var perWorker = nn.BatchNorm2d(C);
        using (no_grad()) { perWorker.weight!.copy_(linspace(0.5, 1.5, C)); perWorker.bias!.copy_(linspace(-0.2, 0.2, C)); }
        using var yHalf = perWorker.forward(x.narrow(0, N / 2, N / 2));
        Assert.True(MaxDifference(yHalf, yAll.narrow(0, N / 2, N / 2)) > 0.1);
    }

    [Fact]
    public async Task Inputs_far_from_zero_keep_BatchNorm2d_s_statistics_step_after_step_from_one_sum_each_way()
    {
        // A mean of 300 against a standard deviation near 1, drifting upward by 20 per step: one-pass sums of x and x²
        // (or of x − K for any K the replicas could agree on before the step) would lose the variance to cancellation
        // in float32, so this holds only if the replicas' statistics are combined without it.
        const int Steps = 4;
        const float Far = 300;
        Tensor Batch(int step) { var x = Inputs(); x.add_(Far + 20 * step); return x; }
        static float Relative(Tensor actual, Tensor expected) => ((actual - expected).abs().max() / expected.abs().max()).to_type(ScalarType.Float32).item<float>();

        // The reference in double. Float32 BatchNorm2d is off from it by up to 4e-6 of the largest value here (it accumulates
        // in double); ours by about 1e-5, as the global mean near 340 is rounded to float32 (ulp 3e-5) before x − mean.
        // One-pass sums of x − K, K the bias-corrected running mean (a shift all replicas know before the step), were off by
        // 1.5e-4 as the batches drift; about zero they cancel more still.
        using var reference = nn.BatchNorm2d(C).to(ScalarType.Float64);
        var expected = new List<(Tensor Output, Tensor InputGrad, Tensor RunningVar)>();
        for (var step = 0; step < Steps; step++)
        {
            using var x = Batch(step);
            using var xAll = x.to_type(ScalarType.Float64).requires_grad_(true);
            var y = reference.forward(xAll);
            using (var loss = Loss(y)) loss.backward();
            expected.Add((y.detach(), xAll.grad!.clone(), reference.running_var!.clone()));
        }

        await using var harness = new RingHarness(2);
        var ring = await harness.ConnectAsync(generation: 1);
        var counters = new CountingSum[2];
        var ranks = await Task.WhenAll(Enumerable.Range(0, 2).Select(rank => Task.Factory.StartNew(() =>
        {
            var replicas = counters[rank] = new CountingSum(new BlockingReplicaSum(new HostCommunicator(ring[rank]), TimeSpan.FromSeconds(30)));
            using var norm = new GlobalBatchNorm2d(C, replicas);
            var steps = new List<(Tensor Output, Tensor InputGrad, Tensor RunningVar)>();
            for (var step = 0; step < Steps; step++)
            {
                using var x = Batch(step);
                var xLocal = x.narrow(0, rank * N / 2, N / 2).clone().requires_grad_(true);
                var y = norm.forward(xLocal);
                using (var loss = Loss(y)) loss.backward();
                replicas.ThrowIfFailed();
                steps.Add((y.detach(), xLocal.grad!.clone(), norm.named_buffers().First(b => b.name == "running_var").buffer.clone()));
            }
            return steps;
        }, TaskCreationOptions.LongRunning)));

        for (var rank = 0; rank < 2; rank++)
            for (var step = 0; step < Steps; step++)
            {
                var (output, inputGrad, runningVar) = ranks[rank][step];
                var (outputAll, gradAll, runningVarAll) = expected[step];
                using var outputHalf = outputAll.narrow(0, rank * N / 2, N / 2);
                using var gradHalf = gradAll.narrow(0, rank * N / 2, N / 2) * 2;
                Assert.True(Relative(output, outputHalf) <= 4e-5, $"rank {rank}, step {step}: output differs by {Relative(output, outputHalf):E2} of its largest");
                Assert.True(Relative(inputGrad, gradHalf) <= 4e-5, $"rank {rank}, step {step}: input gradient differs by {Relative(inputGrad, gradHalf):E2}");
                Assert.True(Relative(runningVar, runningVarAll) <= 4e-5, $"rank {rank}, step {step}: running variance differs by {Relative(runningVar, runningVarAll):E2}");
            }
        // One collective forward and one backward per step, as PyTorch's SyncBatchNorm.
        Assert.All(counters, counter => Assert.Equal(2 * Steps, counter.Calls));
    }

    /// <summary>Counts the collectives a layer makes.</summary>
    sealed class CountingSum(IReplicaSum inner) : IReplicaSum
    {
        public int Calls;
        public void SumInPlace(Tensor data) { Calls++; inner.SumInPlace(data); }
        public void Fail(Exception error) => inner.Fail(error);
        public void ThrowIfFailed() => inner.ThrowIfFailed();
        public int Replica => inner.Replica;
        public int Replicas => inner.Replicas;
    }

    [Fact]
    public void With_no_other_replica_it_trains_as_BatchNorm2d_bit_for_bit()
    {
        // One worker: the fused kernel, as PyTorch's SyncBatchNorm falls back to batch_norm (the autograd ops would differ
        // in the last bits, and cost SimCLR's step 51 ms of backward).
        using var reference = nn.BatchNorm2d(C);
        using var norm = new GlobalBatchNorm2d(C, new BlockingReplicaSum(new HostCommunicator(new SingleRank()), TimeSpan.FromSeconds(5)));
        using var x = Inputs();
        using var xReference = x.detach().requires_grad_();
        using var xGlobal = x.detach().requires_grad_();
        using var yReference = reference.forward(xReference);
        using var yGlobal = norm.forward(xGlobal);
        using (var loss = Loss(yReference)) loss.backward();
        using (var loss = Loss(yGlobal)) loss.backward();

        Assert.True(MaxDifference(yGlobal, yReference) == 0, $"outputs differ by {MaxDifference(yGlobal, yReference):E2}");
        Assert.True(MaxDifference(xGlobal.grad!, xReference.grad!) == 0, $"input gradients differ by {MaxDifference(xGlobal.grad!, xReference.grad!):E2}");
        var parameters = norm.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        foreach (var (name, parameter) in reference.named_parameters())
            Assert.True(MaxDifference(parameters[name].grad!, parameter.grad!) == 0, $"{name}'s gradients differ");
        var buffers = norm.named_buffers().ToDictionary(b => b.name, b => b.buffer);
        foreach (var (name, buffer) in reference.named_buffers())
            Assert.True(MaxDifference(buffers[name].to_type(ScalarType.Float32), buffer.to_type(ScalarType.Float32)) == 0, $"{name} differs");
    }

    [Fact]
    public void In_eval_mode_it_normalises_with_the_running_statistics_like_BatchNorm2d()
    {
        using var x = Inputs();
        using var reference = nn.BatchNorm2d(C);
        using var norm = new GlobalBatchNorm2d(C, new BlockingReplicaSum(new HostCommunicator(new SingleRank()), TimeSpan.FromSeconds(5)));
        using (no_grad()) { reference.forward(x).Dispose(); norm.forward(x).Dispose(); }   // one training step of the running statistics
        reference.eval(); norm.eval();
        using var shifted = x * 0.5 - 1;
        using var expected = reference.forward(shifted);
        using var actual = norm.forward(shifted);
        Assert.True(MaxDifference(actual, expected) <= Tolerance, $"eval output differs by {MaxDifference(actual, expected):E2}");
    }

    [Fact]
    public async Task A_peer_lost_during_backward_surfaces_after_backward_as_a_collective_error_naming_it()
    {
        using var x = Inputs();
        await using var harness = new RingHarness(2);
        var ring = await harness.ConnectAsync(generation: 1, new CollectiveOptions { Timeout = TimeSpan.FromSeconds(5) });
        using var forwardDone = new Barrier(2);
        var ranks = Enumerable.Range(0, 2).Select(rank => Task.Factory.StartNew(() =>
        {
            var replicas = new BlockingReplicaSum(new HostCommunicator(ring[rank]), TimeSpan.FromSeconds(30));
            using var norm = new GlobalBatchNorm2d(C, replicas);
            var xLocal = x.narrow(0, rank * N / 2, N / 2).clone().requires_grad_(true);
            using var loss = Loss(norm.forward(xLocal));
            forwardDone.SignalAndWait();
            if (rank == 1)
            {
                ring[1].DisposeAsync().AsTask().GetAwaiter().GetResult();   // worker 1 dies before its backward
                return null;
            }
            loss.backward();                                                  // must return, not crash in native code
            return Record.Exception(replicas.ThrowIfFailed);
        }, TaskCreationOptions.LongRunning)).ToArray();
        var results = await Task.WhenAll(ranks).WaitAsync(TimeSpan.FromSeconds(60));

        var error = Assert.IsType<CollectiveException>(results[0]);
        Assert.Contains("global batch norm", error.Message);
        Assert.Equal(1, error.PeerRank);
    }
}
