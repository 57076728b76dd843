using Pretrain.Worker.Collectives;
using Pretrain.Worker.Models.Layers;
using Pretrain.Worker.Training;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;

namespace Pretrain.Tests.Training;

/// <summary>
/// A chain of four parameters of distinct sizes, so each bucket is told apart by its size: Σ(x·p0), then ·Σw1, ·Σw2,
/// ·Σw3, a mark before each of the last three (w1, w2, w3 are used after their mark and never before), p0 a stem that
/// no mark covers. With 1-byte caps each parameter has a bucket of its own: w3 (7), w2 (6), w1 (3), then p0 with the
/// three extras (5).
/// </summary>
internal sealed class Chain : IDisposable
{
    public readonly Parameter P0 = new(ones(2)), W1 = new(ones(3)), W2 = new(ones(6)), W3 = new(ones(7));
    public readonly GradientMark M1, M2, M3;

    public Chain()
    {
        M1 = new GradientMark([W1]);
        M2 = new GradientMark([W2]);
        M3 = new GradientMark([W3]);
    }

    public Parameter[] Parameters => [P0, W1, W2, W3];

    public Tensor Loss(Tensor x)
    {
        var h = (x * P0).sum();
        h = M1.Pass(h) * W1.sum();
        h = M2.Pass(h) * W2.sum();
        return M3.Pass(h) * W3.sum();
    }

    public GradientBuckets Buckets(params GradientMark[] marks) => new(Parameters, marks, firstBucketBytes: 1, bucketBytes: 1);

    public void Dispose()
    {
        foreach (var p in Parameters) p.Dispose();
    }
}

public class GradientMarkTests
{
    static readonly long[] Backward = [7, 6, 3];          // the buckets backward completes, in bucket order
    static readonly long[] All = [7, 6, 3, 5];            // and the last one, with the extras, after backward

    [Fact]
    public async Task Marks_start_buckets_during_backward_only_when_armed_and_the_last_bucket_after_it()
    {
        using var scope = NewDisposeScope();
        using var chain = new Chain();
        using var buckets = chain.Buckets(chain.M1, chain.M2, chain.M3);
        var ring = new RecordingCommunicator();
        var x = full(2, 0.5f);

        chain.Loss(x).backward();                             // not armed: an evaluation, a probe, a test
        Assert.Empty(ring.Started);
        Assert.NotEqual(0f, chain.W3.grad!.abs().sum().item<float>());

        buckets.Zero();
        buckets.Arm(ring, CancellationToken.None);
        chain.Loss(x).backward();
        Assert.Equal(Backward, ring.Started);                 // started while backward went on; the extras not written yet
        buckets.Launch(1.0, stopVote: false);
        Assert.Equal(All, ring.Started);
        await buckets.ReduceAsync();
        Assert.True(buckets.LastReduction.Ended >= buckets.LastReduction.Started);
        Assert.True(buckets.LastReduction.HiddenSeconds <= buckets.LastReduction.Seconds);
    }

    [Fact]
    public async Task Buckets_start_in_bucket_order_even_when_backward_completes_a_later_one_first()
    {
        using var scope = NewDisposeScope();
        using var chain = new Chain();
        // Marks given out of forward order: the plan puts w2 (6) before w3 (7), but backward completes w3 first.
        using var buckets = chain.Buckets(chain.M1, chain.M3, chain.M2);
        var ring = new RecordingCommunicator();
        buckets.Arm(ring, CancellationToken.None);
        chain.Loss(full(2, 0.5f)).backward();
        Assert.Equal(new long[] { 6, 7, 3 }, ring.Started);   // w3's bucket waited for w2's: every rank starts the same order
        buckets.Launch(1.0, stopVote: false);
        Assert.Equal(new long[] { 6, 7, 3, 5 }, ring.Started);
        await buckets.AbandonAsync();
    }

    [Fact]
    public async Task With_accumulation_each_bucket_starts_once_from_the_last_micro_step_with_every_micro_step_in_it()
    {
        using var scope = NewDisposeScope();
        using var chain = new Chain();
        using var buckets = chain.Buckets(chain.M1, chain.M2, chain.M3);
        var ring = new RecordingCommunicator();
        Tensor x1 = full(2, 0.5f), x2 = full(2, 0.25f), x3 = full(2, 2f);
        var expected = Enumerable.Range(0, 4).Select(i => zeros_like(chain.Parameters[i])).ToArray();
        foreach (var x in new[] { x1, x2, x3, x3, x2, x3, x3 })
        {
            var grads = autograd.grad([chain.Loss(x)], chain.Parameters);        // apart from .grad, not armed
            for (var i = 0; i < 4; i++) expected[i].add_(grads[i]);
        }

        chain.Loss(x1).backward();                                               // micro-step 1: only adds into the buckets
        Assert.Empty(ring.Started);
        buckets.Arm(ring, CancellationToken.None);                               // micro-step 2, the last
        var passes = chain.Loss(x2) + chain.Loss(x3) + chain.Loss(x3);           // three passes through every mark: the first is marked
        passes.backward(retain_graph: true);
        Assert.Equal(Backward, ring.Started);
        passes.backward();                                                       // backward reaches the marks again: nothing starts twice
        Assert.Equal(Backward, ring.Started);
        buckets.Launch(1.0, stopVote: false);
        await buckets.ReduceAsync();
        Assert.Equal(All, ring.Started);                                         // once each

        // The identity allreduce leaves the gradients as backward made them: every micro-step and every pass.
        for (var i = 0; i < 4; i++)
            Assert.True(chain.Parameters[i].grad!.allclose(expected[i], rtol: 1e-5, atol: 1e-5), $"parameter {i}");
    }

    [Fact]
    public async Task A_mark_placed_by_an_abandoned_step_starts_nothing_in_the_next()
    {
        using var scope = NewDisposeScope();
        using var chain = new Chain();
        using var buckets = chain.Buckets(chain.M1, chain.M2, chain.M3);
        var ring = new RecordingCommunicator();
        buckets.Arm(ring, CancellationToken.None);
        var stale = chain.Loss(full(2, 0.5f));                                   // the step fails before its backward
        await buckets.AbandonAsync();
        buckets.Arm(ring, CancellationToken.None);
        stale.backward();
        Assert.Empty(ring.Started);
        await buckets.AbandonAsync();
    }

    [Fact]
    public async Task One_rank_places_no_mark_and_starts_no_collective()
    {
        using var scope = NewDisposeScope();
        using var chain = new Chain();
        using var buckets = chain.Buckets(chain.M1, chain.M2, chain.M3);
        buckets.Arm(new HostCommunicator(new SingleRank()), CancellationToken.None);
        var loss = chain.Loss(full(2, 0.5f));
        loss.backward();
        buckets.Launch(2.0, stopVote: false);
        await buckets.ReduceAsync();
        Assert.Equal((2.0, 0, 0), buckets.Result);
        Assert.Equal(default, buckets.LastReduction);
    }

    [Fact]
    public async Task Buckets_started_during_backward_sum_over_two_ranks_like_buckets_started_after_it()
    {
        var group = new InProcessGroup(2);
        var inputs = new[] { full(2, 0.5f), full(2, -1.5f) };
        var local = new float[2][][];
        var reduced = await Task.WhenAll(Enumerable.Range(0, 2).Select(rank => Task.Factory.StartNew(() =>
        {
            using var scope = NewDisposeScope();
            using var chain = new Chain();
            using var buckets = chain.Buckets(chain.M1, chain.M2, chain.M3);
            local[rank] = [.. autograd.grad([chain.Loss(inputs[rank])], chain.Parameters).Select(g => g.data<float>().ToArray())];
            buckets.Arm(new HostCommunicator(group.Rank(rank)), CancellationToken.None);
            chain.Loss(inputs[rank]).backward();
            buckets.Launch(rank + 1.0, stopVote: false);
            buckets.ReduceAsync().GetAwaiter().GetResult();
            return (Loss: buckets.Result.Loss, Gradients: chain.Parameters.Select(p => p.grad!.data<float>().ToArray()).ToArray());
        }, TaskCreationOptions.LongRunning)));

        foreach (var (loss, gradients) in reduced)
        {
            Assert.Equal(3.0, loss, 6);
            for (var i = 0; i < 4; i++)
                Assert.Equal(local[0][i].Zip(local[1][i], (a, b) => a + b), gradients[i], (a, b) => Math.Abs(a - b) <= 1e-5f * Math.Max(1, Math.Abs(a)));
        }
    }
}

public class BucketPlanTests
{
    [Fact]
    public void The_last_mark_s_parameters_come_first_and_the_parameters_no_mark_covers_last()
    {
        using var chain = new Chain();
        var plan = BucketPlan.Of(chain.Parameters, [chain.M1, chain.M2, chain.M3], firstBucketBytes: 1, bucketBytes: 1);
        Assert.Equal(new[] { new[] { 3 }, new[] { 2 }, new[] { 1 }, new[] { 0 } }, plan.Buckets);
        Assert.Equal(new[] { new[] { 1 }, new[] { 2 }, new[] { 3 } }, plan.Marked);
        var together = BucketPlan.Of(chain.Parameters, [chain.M1, chain.M2, chain.M3]);
        Assert.Equal(new[] { new[] { 3, 2, 1, 0 } }, together.Buckets);        // 18 floats: one bucket under DDP's caps
        var unmarked = BucketPlan.Of(chain.Parameters, []);
        Assert.Equal(new[] { new[] { 3, 2, 1, 0 } }, unmarked.Buckets);        // reverse parameter order, as DDP
    }

    [Fact]
    public void The_first_bucket_is_capped_smaller_than_the_others()
    {
        var parameters = Enumerable.Range(0, 7).Select(_ => new Parameter(zeros(100))).ToArray();   // 400 bytes each
        var plan = BucketPlan.Of(parameters, [], firstBucketBytes: 400, bucketBytes: 1200);
        Assert.Equal(new[] { new[] { 6 }, new[] { 5, 4, 3 }, new[] { 2, 1, 0 } }, plan.Buckets);
        foreach (var p in parameters) p.Dispose();
    }

    [Fact]
    public void A_mark_must_cover_trained_parameters_each_once()
    {
        using var chain = new Chain();
        using var stray = new Parameter(ones(4));
        Assert.Throws<ArgumentException>(() => BucketPlan.Of(chain.Parameters, [new GradientMark([stray])]));
        Assert.Throws<ArgumentException>(() => BucketPlan.Of(chain.Parameters, [chain.M1, new GradientMark([chain.W1, chain.W2])]));
    }
}
