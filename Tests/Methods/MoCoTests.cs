using Pretrain.Worker.Methods.Contrastive;
using Xunit;
using static TorchSharp.torch;

namespace Pretrain.Tests.Methods;

public class MoCoTests
{
    [Fact]
    public void The_queue_replaces_its_oldest_keys_first_and_wraps()
    {
        using var queue = new MoCoQueue(size: 6, dimension: 2, seed: 1);
        using var initial = queue.Keys.clone();
        using var batch1 = tensor(new float[] { 1, 0, 2, 0 }).reshape(2, 2);
        using var batch2 = tensor(new float[] { 3, 0, 4, 0 }).reshape(2, 2);
        using var batch3 = tensor(new float[] { 5, 0, 6, 0 }).reshape(2, 2);
        using var batch4 = tensor(new float[] { 7, 0, 8, 0 }).reshape(2, 2);

        queue.Enqueue(batch1);
        queue.Enqueue(batch2);
        Assert.Equal(4, queue.Pointer);
        Assert.Equal(initial[4, 0].item<float>(), queue.Keys[4, 0].item<float>());   // not yet reached
        queue.Enqueue(batch3);
        Assert.Equal(0, queue.Pointer);                                               // full circle
        queue.Enqueue(batch4);                                                        // overwrites batch1, the oldest

        Assert.Equal(new float[] { 7, 8, 3, 4, 5, 6 }, Enumerable.Range(0, 6).Select(i => queue.Keys[i, 0].item<float>()));
    }

    [Fact]
    public void A_batch_that_does_not_divide_the_queue_is_refused()
    {
        using var queue = new MoCoQueue(size: 5, dimension: 2, seed: 1);
        using var batch = zeros(2, 2);
        Assert.Contains("not a multiple", Assert.Throws<ArgumentException>(() => queue.Enqueue(batch)).Message);
    }

    [Fact]
    public void The_initial_queue_holds_unit_vectors_from_the_seed()
    {
        using var a = new MoCoQueue(8, 4, seed: 3);
        using var b = new MoCoQueue(8, 4, seed: 3);
        using var norms = a.Keys.norm(1);
        Assert.True((norms - 1).abs().max().item<float>() < 1e-5);
        Assert.True(a.Keys.eq(b.Keys).all().item<bool>());
    }

    [Fact]
    public void The_key_encoder_moves_towards_the_query_encoder_by_one_minus_momentum()
    {
        using var key = tensor(new float[] { 1, 2, 3 });
        using var query = tensor(new float[] { 3, 2, 1 });
        MomentumUpdate.Apply([key], [query], momentum: 0.99);
        // 0.99·k + 0.01·q
        Assert.Equal(new[] { 1.02f, 2.0f, 2.98f }, key.data<float>().ToArray().Select(x => MathF.Round(x, 5)));
        Assert.Equal(new[] { 3f, 2f, 1f }, query.data<float>().ToArray());
    }
}
