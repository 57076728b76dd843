namespace Pretrain.Data.Tokenizers;

/// <summary>
/// Text to token ids and back. Implementations: byte-level (ids 0..255), and tiktoken's cl100k_base /
/// o200k_base through Microsoft.ML.Tokenizers, optionally with a compacted vocabulary. Special tokens
/// for BERT-style work get ids after the ordinary vocabulary.
/// </summary>
public interface ITokenizer
{
    /// <summary>The name recorded in index.json, e.g. "byte", "cl100k_base".</summary>
    string Name { get; }

    /// <summary>Number of ids, special tokens included: a model's embedding size.</summary>
    int VocabularySize { get; }

    /// <summary>Ids of [CLS], [SEP], [MASK], [PAD].</summary>
    SpecialTokens Specials { get; }

    /// <summary>Appends the ids of <paramref name="text"/> to <paramref name="ids"/>.</summary>
    void Encode(string text, List<int> ids);

    string Decode(ReadOnlySpan<int> ids);
}

/// <summary>Ids of the special tokens of a tokenizer.</summary>
public sealed record SpecialTokens(int Cls, int Sep, int Mask, int Pad);
