using Pretrain.Worker.Collectives;
using Pretrain.Worker.Training;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;

namespace Pretrain.Tests.Training;

public class GradientBucketsTests
{
    [Fact]
    public async Task Two_ranks_end_with_the_summed_gradient_loss_and_stop_votes()
    {
        var group = new InProcessGroup(2);
        var results = await Task.WhenAll(Enumerable.Range(0, 2).Select(rank => Task.Factory.StartNew(() =>
        {
            using var a = new Parameter(zeros(2, 3));
            using var b = new Parameter(zeros(4));
            a.grad = full(2, 3, rank + 1.0f);       // rank 0: 1, rank 1: 2 → sum 3
            b.grad = arange(4, dtype: ScalarType.Float32) * (rank == 0 ? 1 : -1); // sum 0
            using var buckets = new GradientBuckets([a, b]);   // takes the gradients in
            buckets.Arm(new HostCommunicator(group.Rank(rank)), CancellationToken.None);
            buckets.Launch(localLoss: rank == 0 ? 2.0 : 4.0, stopVote: rank == 1, leaveVote: rank == 0);
            buckets.ReduceAsync().GetAwaiter().GetResult();
            var (loss, votes, leavers) = buckets.Result;
            return (loss, votes, leavers, a: a.grad!.data<float>().ToArray(), b: b.grad!.data<float>().ToArray());
        }, TaskCreationOptions.LongRunning)));

        foreach (var (loss, votes, leavers, a, b) in results)
        {
            Assert.Equal(6.0, loss, 6);
            Assert.Equal(2, votes);      // a leaver's vote is also a vote to stop
            Assert.Equal(1, leavers);
            Assert.All(a, x => Assert.Equal(3f, x));
            Assert.All(b, x => Assert.Equal(0f, x));
        }
    }

    [Fact]
    public async Task World_size_one_passes_the_loss_and_the_vote_through_without_touching_the_gradient()
    {
        using var a = new Parameter(zeros(3));
        a.grad = full(3, 2.5f);
        using var buckets = new GradientBuckets([a]);
        buckets.Arm(new HostCommunicator(new SingleRank()), CancellationToken.None);
        buckets.Launch(1.25, stopVote: true);
        await buckets.ReduceAsync();
        Assert.Equal((1.25, 1, 0), buckets.Result);
        Assert.Equal(default, buckets.LastReduction);   // nothing crossed a network
        Assert.All(a.grad!.data<float>().ToArray(), x => Assert.Equal(2.5f, x));
    }

    [Fact]
    public void Backward_adds_into_the_buckets_because_every_grad_is_a_view_of_its_bucket()
    {
        using var scope = NewDisposeScope();
        using var linear = nn.Linear(4, 3);
        var parameters = linear.parameters().ToArray();
        using var buckets = new GradientBuckets(parameters);
        var x = randn(5, 4);

        var expected = autograd.grad([linear.forward(x).square().sum()], parameters);   // the gradient, computed apart from .grad
        linear.forward(x).square().sum().backward();
        var laidOut = cat(buckets.Members[0].Select(p => expected[Array.IndexOf(parameters, p)].flatten()).ToArray());
        Assert.True(buckets.Gradients[0].allclose(laidOut, rtol: 0, atol: 0), "backward's gradient is not in the bucket");

        buckets.Zero();                                                      // one zero_ on the bucket zeroes every .grad
        Assert.All(parameters, p => Assert.Equal(0f, p.grad!.abs().sum().item<float>()));
        linear.forward(x).square().sum().backward();                         // and the next backward adds into the same memory
        linear.forward(x).square().sum().backward();
        Assert.True(buckets.Gradients[0].allclose(laidOut * 2, rtol: 1e-6, atol: 1e-6), "two backward passes did not add up in the bucket");
    }

    [Fact]
    public void The_norm_over_buckets_is_the_parameter_wise_norm_and_clipping_scales_every_gradient_alike()
    {
        using var scope = NewDisposeScope();
        long[][] shapes = [[3, 4], [5], [2, 2, 2], [7], [1]];
        var gradients = shapes.Select((shape, i) => randn(shape) * (i + 1)).ToArray();
        var inBuckets = shapes.Select(shape => new Parameter(zeros(shape))).ToArray();
        var apart = shapes.Select(shape => new Parameter(zeros(shape))).ToArray();
        for (var i = 0; i < shapes.Length; i++)
            (inBuckets[i].grad, apart[i].grad) = (gradients[i].clone(), gradients[i].clone());
        using var buckets = new GradientBuckets(inBuckets, firstBucketBytes: 16, bucketBytes: 48);
        Assert.True(buckets.Count > 2, $"{buckets.Count} buckets");

        var byBucket = GradientClipping.ClipGlobalNorm(buckets.Gradients, maxNorm: 1.0);
        var byParameter = GradientClipping.ClipGlobalNorm(apart, maxNorm: 1.0);

        Assert.True(byParameter > 1.0, $"norm {byParameter}: nothing to clip");
        Assert.True(Math.Abs(byBucket - byParameter) <= 1e-6 * byParameter, $"buckets {byBucket}, parameters {byParameter}");
        for (var i = 0; i < shapes.Length; i++)
            Assert.True(inBuckets[i].grad!.allclose(apart[i].grad!, rtol: 1e-6, atol: 1e-7), $"gradient {i} clipped differently");
        Assert.Equal(1.0, GradientClipping.ClipGlobalNorm(buckets.Gradients, maxNorm: 0), 4);   // 0 only measures: the clipped norm
    }

    [Fact]
    public async Task A_parameter_without_a_gradient_is_reduced_as_zeros_and_keeps_a_zero_gradient()
    {
        var group = new InProcessGroup(2);
        var results = await Task.WhenAll(Enumerable.Range(0, 2).Select(rank => Task.Factory.StartNew(() =>
        {
            using var scope = NewDisposeScope();
            var used = new Parameter(ones(3));
            var unused = new Parameter(ones(2));
            using var buckets = new GradientBuckets([used, unused], firstBucketBytes: 4, bucketBytes: 4);   // one bucket each
            buckets.Arm(new HostCommunicator(group.Rank(rank)), CancellationToken.None);
            (used * (rank + 1.0f)).sum().backward();                          // rank 0: 1, rank 1: 2 → 3
            buckets.Launch(localLoss: 0, stopVote: false);
            buckets.ReduceAsync().GetAwaiter().GetResult();
            return (Used: used.grad!.data<float>().ToArray(), Unused: unused.grad?.data<float>().ToArray());
        }, TaskCreationOptions.LongRunning)));

        foreach (var (used, unused) in results)
        {
            Assert.All(used, x => Assert.Equal(3f, x));
            Assert.NotNull(unused);
            Assert.All(unused!, x => Assert.Equal(0f, x));
        }
    }

    [Fact]
    public async Task An_abandoned_step_waits_for_what_it_started_and_can_arm_again()
    {
        using var a = new Parameter(zeros(3));
        using var buckets = new GradientBuckets([a]);
        var ring = new RecordingCommunicator();
        buckets.Arm(ring, CancellationToken.None);
        Assert.Throws<InvalidOperationException>(() => buckets.Arm(ring, CancellationToken.None));   // one step at a time
        await buckets.AbandonAsync();
        buckets.Arm(ring, CancellationToken.None);
        buckets.Launch(0.5, stopVote: false);
        await buckets.ReduceAsync();
        Assert.Single(ring.Started);
    }
}
