using Pretrain.Shared.Recipes;
using Pretrain.Tests.Training;
using Pretrain.Worker.Models;
using Xunit;
using static TorchSharp.torch;

namespace Pretrain.Tests.Methods;

public class BertTests
{
    static readonly TransformerModel Shape = new(Layers: 2, Heads: 2, Width: 32, Context: 16, Dropout: 0);

    [Fact]
    public void Bert_attends_both_ways_and_GPT_only_backwards()
    {
        using var bert = new Bert(Shape, seed: 1);
        using var gpt = new Gpt(Shape, seed: 1);
        using var a = arange(16, dtype: int64).view(1, 16);
        using var b = a.clone();
        b[0, 12] = tensor(200L);                                  // change a late token
        using var noGrad = no_grad();
        Assert.False(bert.forward(a)[0, 3].allclose(bert.forward(b)[0, 3]), "BERT's position 3 must see position 12");
        Assert.True(gpt.forward(a)[0, 3].allclose(gpt.forward(b)[0, 3]), "GPT's position 3 must not see position 12");
    }

    [Fact]
    public void Only_masked_positions_count_in_the_loss()
    {
        using var bert = new Bert(Shape, seed: 1);
        using var inputs = randint(0, 256, [2, 16], dtype: int64);
        using var labels = full(2, 16, -100L, dtype: int64);
        labels[0, 5] = tensor(7L);
        labels[1, 9] = tensor(42L);
        var (loss, _, masked) = bert.MaskedLoss(inputs, labels);
        using var logits = bert.forward(inputs);
        using var expected = (functional(logits[0, 5], 7) + functional(logits[1, 9], 42)) / 2;
        Assert.Equal(2, masked);
        Assert.Equal(expected.item<float>(), loss.item<float>(), 5);
        loss.Dispose();

        static Tensor functional(Tensor row, long target) =>
            nn.functional.cross_entropy(row.unsqueeze(0), tensor(new[] { target }));
    }

    [Fact]
    public async Task Two_workers_lower_the_masked_LM_loss_with_identical_replicas()
    {
        var recipe = TestRecipes.Tiny(t => TestRecipes.Set(TestRecipes.Set(TestRecipes.Set(t, "method", "bert"), "steps", "40"), "lr", "0.002"));
        var results = await TrainerTests.TrainRing(recipe, 2);
        Assert.Equal(results[0].ReplicaChecksum, results[1].ReplicaChecksum);
        Assert.True(results[0].FirstLoss > 5.0, $"first loss {results[0].FirstLoss} (ln 257 = 5.55 at init)");
        Assert.True(results[0].FinalLoss < results[0].FirstLoss - 1.5, $"loss {results[0].FirstLoss} → {results[0].FinalLoss}");
        Assert.InRange(results[0].Eval["masked_accuracy"], 0.1, 1.0);       // chance is 1/256
        Assert.Equal(results[0].Eval["masked_accuracy"], results[1].Eval["masked_accuracy"]);
    }
}
