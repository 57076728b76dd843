using Pretrain.Data.Collators;
using Xunit;
using static TorchSharp.torch;

namespace Pretrain.Tests.Data;

public class MaskedLmCollatorTests
{
    private const int Vocab = 1000, Cls = 0, Sep = 1, Pad = 2, MaskId = 3, Length = 500, Sequences = 200;
    private static readonly MaskedLmConfig Config = new(Vocab, MaskId, [Cls, Sep, Pad]);

    [Fact]
    public void Proportions_are_15_percent_then_80_10_10_within_4_standard_deviations()
    {
        var collator = new MaskedLmCollator(Config, seed: 1);
        long ordinary = 0, chosen = 0, masked = 0, random = 0, unchanged = 0;
        var (inputs, labels) = (new long[Length], new long[Length]);
        for (var s = 0; s < Sequences; s++) // 200 × 500 = 100k tokens
        {
            var tokens = Sequence(s);
            collator.Mask(tokens, step: 3, sampleId: s, inputs, labels);
            for (var t = 0; t < Length; t++)
            {
                if (tokens[t] is Cls or Sep or Pad)
                    continue;
                ordinary++;
                if (labels[t] == MaskedLmCollator.IgnoreIndex)
                    continue;
                chosen++;
                if (inputs[t] == MaskId) masked++;
                else if (inputs[t] != tokens[t]) random++;
                else unchanged++;
            }
        }
        WithinFourSd(chosen, ordinary, 0.15);
        WithinFourSd(masked, chosen, 0.8);
        // A random token equals the original 1 time in 996 (ordinary tokens), and then counts as unchanged.
        var p = 0.1 * (1 - 1.0 / (Vocab - 4));
        WithinFourSd(random, chosen, p);
        WithinFourSd(unchanged, chosen, 1 - 0.8 - p);
    }

    [Fact]
    public void Specials_are_never_chosen_nor_drawn_as_random_tokens()
    {
        var collator = new MaskedLmCollator(Config with { MaskProbability = 1, MaskTokenFraction = 0, RandomTokenFraction = 1 }, seed: 2);
        var (inputs, labels) = (new long[Length], new long[Length]);
        for (var s = 0; s < 20; s++)
        {
            var tokens = Sequence(s);
            collator.Mask(tokens, 0, s, inputs, labels);
            for (var t = 0; t < Length; t++)
                if (tokens[t] is Cls or Sep or Pad)
                {
                    Assert.Equal(tokens[t], inputs[t]);
                    Assert.Equal(MaskedLmCollator.IgnoreIndex, labels[t]);
                }
                else
                {
                    Assert.Equal(tokens[t], labels[t]);            // every ordinary token chosen at probability 1
                    Assert.InRange(inputs[t], MaskId + 1, Vocab - 1); // random tokens are ordinary: never [CLS]/[SEP]/[PAD]/[MASK]
                }
        }
    }

    [Fact]
    public void Masking_is_a_pure_function_of_seed_step_and_sample_id()
    {
        using var scope = NewDisposeScope();
        var collator = new MaskedLmCollator(Config, seed: 5);
        int[] tokens = [.. Sequence(7), .. Sequence(8)];
        var (pair, _) = collator.Collate(tokens, [7, 8], step: 9);                  // (2, T)
        var (alone, _) = new MaskedLmCollator(Config, 5).Collate(Sequence(8), [8], 9); // (1, T): another rank, another batch
        Assert.Equal(new long[] { 2, Length }, pair.shape);
        Assert.Equal(pair[1].data<long>().ToArray(), alone[0].data<long>().ToArray());
        var (otherStep, _) = collator.Collate(Sequence(8), [8], 10);
        Assert.NotEqual(alone[0].data<long>().ToArray(), otherStep[0].data<long>().ToArray());
    }

    private static void WithinFourSd(long count, long trials, double p)
    {
        var sd = Math.Sqrt(trials * p * (1 - p));
        Assert.InRange(count, trials * p - 4 * sd, trials * p + 4 * sd);
    }

    /// <summary>[CLS] ordinary… [SEP] [PAD]… with the padding length varying by sequence.</summary>
    private static int[] Sequence(int s)
    {
        var pad = s % 50;
        var tokens = new int[Length];
        tokens[0] = Cls;
        for (var t = 1; t < Length - 1 - pad; t++)
            tokens[t] = 4 + (s * 7919 + t * 104729) % (Vocab - 4);
        tokens[Length - 1 - pad] = Sep;
        for (var t = Length - pad; t < Length; t++)
            tokens[t] = Pad;
        return tokens;
    }
}
