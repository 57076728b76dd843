using Microsoft.ML.Tokenizers;

namespace Pretrain.Data.Tokenizers;

/// <summary>
/// tiktoken's byte-level BPE encodings through Microsoft.ML.Tokenizers, loaded offline from the
/// .Data.Cl100kBase / .Data.O200kBase packages. The ordinary vocabulary ends after tiktoken's own
/// specials (cl100k_base: 100,277 ids; o200k_base: 200,019); our [CLS], [SEP], [MASK], [PAD] follow.
/// Text containing tiktoken's own markers (e.g. "&lt;|endoftext|&gt;") encodes to those special ids.
/// </summary>
public sealed class TiktokenBpeTokenizer : ITokenizer
{
    public static readonly IReadOnlyList<string> Encodings = ["cl100k_base", "o200k_base"];
    private readonly TiktokenTokenizer bpe;
    private readonly int ordinary;

    public TiktokenBpeTokenizer(string encoding)
    {
        bpe = TiktokenTokenizer.CreateForEncoding(encoding);
        Name = encoding;
        // tiktoken's own specials (<|endoftext|>, ...) hold the highest ids; ordinary ranks are dense below them.
        ordinary = (bpe.SpecialTokens ?? throw new InvalidDataException($"{encoding}: tiktoken encoding without special tokens")).Values.Max() + 1;
        Specials = SpecialTokenText.After(ordinary);
    }

    public string Name { get; }
    public int VocabularySize => ordinary + SpecialTokenText.Names.Count;
    public SpecialTokens Specials { get; }

    public void Encode(string text, List<int> ids) => ids.AddRange(bpe.EncodeToIds(text));

    public string Decode(ReadOnlySpan<int> ids) =>
        SpecialTokenText.Decode(ids, ordinary, Specials, run => bpe.Decode(run.ToArray()));
}
