using System.Text;

namespace Pretrain.Data.Tokenizers;

/// <summary>
/// The four BERT-style special tokens, placed right after a tokenizer's ordinary vocabulary, and decoding
/// that renders them as their names ("[SEP]") between runs of ordinary ids.
/// </summary>
public static class SpecialTokenText
{
    public static readonly IReadOnlyList<string> Names = ["[CLS]", "[SEP]", "[MASK]", "[PAD]"];

    /// <summary>[CLS], [SEP], [MASK], [PAD] at <paramref name="first"/> .. first + 3.</summary>
    public static SpecialTokens After(int first) => new(first, first + 1, first + 2, first + 3);

    /// <summary>Name by id, for index.json ("[CLS]" → id).</summary>
    public static IReadOnlyDictionary<string, int> ByName(SpecialTokens s) =>
        new Dictionary<string, int> { ["[CLS]"] = s.Cls, ["[SEP]"] = s.Sep, ["[MASK]"] = s.Mask, ["[PAD]"] = s.Pad };

    /// <summary>
    /// Decodes <paramref name="ids"/> run by run: ids below <paramref name="ordinary"/> go to
    /// <paramref name="decodeRun"/> together (so multi-byte characters split across tokens decode whole),
    /// special ids become their names; anything else is an error naming the id and the range.
    /// </summary>
    public static string Decode(ReadOnlySpan<int> ids, int ordinary, SpecialTokens specials, Func<ReadOnlySpan<int>, string> decodeRun)
    {
        var text = new StringBuilder();
        var runStart = 0;
        for (var i = 0; i <= ids.Length; i++)
        {
            if (i < ids.Length && (uint)ids[i] < (uint)ordinary)
                continue;
            if (i > runStart)
                text.Append(decodeRun(ids[runStart..i]));
            runStart = i + 1;
            if (i == ids.Length)
                break;
            var special = ids[i] - specials.Cls;
            if ((uint)special >= (uint)Names.Count)
                throw new ArgumentOutOfRangeException(nameof(ids), ids[i], $"token id outside the vocabulary 0-{specials.Pad}");
            text.Append(Names[special]);
        }
        return text.ToString();
    }
}
