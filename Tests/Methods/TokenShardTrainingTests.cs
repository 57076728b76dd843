using Pretrain.Data.Text;
using Pretrain.Shared.Recipes;
using Pretrain.Tests.Training;
using Xunit;
using static Pretrain.Tests.Text.TextPreparations;

namespace Pretrain.Tests.Methods;

/// <summary>GPT and BERT on the token shards of `pretrain prepare text` (data.tokens), 2 workers over a real ring.</summary>
public class TokenShardTrainingTests
{
    static Recipe OnTokens(string method, string folder, int steps, string lr) => TestRecipes.Tiny(t =>
    {
        t = TestRecipes.Set(TestRecipes.Set(TestRecipes.Set(t, "method", method), "steps", steps.ToString()), "lr", lr);
        t = System.Text.RegularExpressions.Regex.Replace(t, "(?m)^  validation_fraction:.*\n", "");
        return System.Text.RegularExpressions.Regex.Replace(t, "(?m)^  text: .*$", $"  tokens: {folder}");
    });

    [Fact]
    public async Task GPT_on_compacted_cl100k_shards_lowers_its_loss_and_reports_bits_per_byte_of_the_validation_text()
    {
        var spec = Spec(Folder(("genesis.txt", Genesis)), tokenizer: "cl100k_base", validation: 0.25, compact: true);
        Prepare(spec);
        var recipe = OnTokens("gpt", spec.Output, steps: 40, lr: "0.003");
        using var corpus = new PreparedTextCorpus(spec.Output, recipe.Transformer.Context);

        var results = await TrainerTests.TrainRing(recipe, 2);

        Assert.Equal(results[0].ReplicaChecksum, results[1].ReplicaChecksum);
        Assert.InRange(results[0].FirstLoss, Math.Log(corpus.VocabularySize) - 0.5, Math.Log(corpus.VocabularySize) + 0.5); // uniform over the compact vocabulary
        Assert.True(results[0].FinalLoss < results[0].FirstLoss - 2, $"loss {results[0].FirstLoss} → {results[0].FinalLoss}");
        var eval = results[0].Eval;
        Assert.Equal(eval["val_loss"] / Math.Log(2) / corpus.ValidationBytesPerToken, eval["bits_per_byte"], 9);
        Assert.True(eval["bits_per_byte"] < eval["val_loss"] / Math.Log(2) / 3, "a cl100k token carries several bytes");
    }

    [Fact]
    public async Task BERT_on_byte_shards_lowers_its_masked_LM_loss()
    {
        var spec = Spec(Folder(("genesis.txt", Genesis)), validation: 0.25);
        Prepare(spec);
        var results = await TrainerTests.TrainRing(OnTokens("bert", spec.Output, steps: 40, lr: "0.002"), 2);

        Assert.Equal(results[0].ReplicaChecksum, results[1].ReplicaChecksum);
        Assert.True(results[0].FinalLoss < results[0].FirstLoss - 1.5, $"loss {results[0].FirstLoss} → {results[0].FinalLoss}");
        Assert.InRange(results[0].Eval["masked_accuracy"], 0.1, 1.0);                      // chance is 1/256
    }
}
