using Pretrain.Data.Tokenizers;

namespace Pretrain.Data;

/// <summary>
/// Token windows for the language-model methods: sample <c>i</c> of a split is <c>context + 1</c>
/// consecutive tokens of that split's stream, at offset <c>i · context</c> (inputs are the first
/// <c>context</c>, next-token targets the last <c>context</c>). Two sources: a raw UTF-8 file, bytes as
/// tokens (<see cref="ByteTextCorpus"/>), and a folder of token shards written by <c>pretrain prepare
/// text</c> (<see cref="Text.PreparedTextCorpus"/>).
/// </summary>
public interface ITokenCorpus : IDisposable
{
    /// <summary>The file or folder the tokens come from, for messages.</summary>
    string Source { get; }

    int Context { get; }

    /// <summary>Every id in a window is below this: the size of a model's embedding.</summary>
    int VocabularySize { get; }

    /// <summary>[CLS], [SEP], [MASK], [PAD] when the corpus has them (prepared folders); null for raw bytes.</summary>
    SpecialTokens? Specials { get; }

    long TrainSamples { get; }
    long ValidationSamples { get; }

    /// <summary>UTF-8 bytes of the validation text per validation token: converts a loss per token to bits per byte.</summary>
    double ValidationBytesPerToken { get; }

    long Samples(Split split);

    /// <summary>Copies the <c>context + 1</c> tokens of sample <paramref name="id"/> of <paramref name="split"/> into <paramref name="destination"/>.</summary>
    void Window(Split split, long id, Span<long> destination);
}
