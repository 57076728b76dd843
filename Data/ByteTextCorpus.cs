namespace Pretrain.Data;

/// <summary>Which part of a corpus a sample comes from.</summary>
public enum Split { Train, Validation }

/// <summary>
/// A UTF-8 text file as bytes (bytes are the tokens, vocabulary 256). The file splits at a fixed
/// boundary: the head trains, the last <c>validationFraction</c> validates. Sample <c>i</c> of a split is
/// the window of <c>context + 1</c> bytes at offset <c>i * context</c> in that split (inputs are the first
/// <c>context</c> bytes, targets the last <c>context</c>), so neighbouring windows share one byte.
/// The whole file is held in memory: 4.3 MB for the KJV. Token shards of `pretrain prepare text` are read by <see cref="Text.PreparedTextCorpus"/>.
/// </summary>
public sealed class ByteTextCorpus : ITokenCorpus
{
    private readonly byte[] _bytes;
    private readonly int _boundary;

    public string Path { get; }
    public int Context { get; }
    public long TrainSamples { get; }
    public long ValidationSamples { get; }

    public ByteTextCorpus(string path, int context, double validationFraction)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(context, 1);
        if (validationFraction is <= 0 or >= 1)
            throw new ArgumentOutOfRangeException(nameof(validationFraction), validationFraction, "must be in (0, 1)");
        Path = path;
        Context = context;
        if (!File.Exists(path))
            throw new InvalidDataException($"{path}: text file not found (expected a UTF-8 text file)");
        _bytes = File.ReadAllBytes(path);
        if (_bytes.Length == 0)
            throw new InvalidDataException($"{path}: file is empty (expected UTF-8 text)");

        _boundary = (int)(_bytes.Length * (1 - validationFraction));
        TrainSamples = WindowsIn(_boundary);
        ValidationSamples = WindowsIn(_bytes.Length - _boundary);
        // Each split needs at least one window of context + 1 bytes.
        var needed = (long)Math.Ceiling((context + 1) / Math.Min(validationFraction, 1 - validationFraction)) + 1;
        if (TrainSamples < 1 || ValidationSamples < 1)
            throw new InvalidDataException(
                $"{path}: {_bytes.Length} bytes is too small: each split needs a window of {context + 1} bytes " +
                $"(context {context} + 1); expected at least {needed} bytes with validation fraction {validationFraction}");
    }

    public string Source => Path;
    public int VocabularySize => 256;
    public Tokenizers.SpecialTokens? Specials => null;
    public double ValidationBytesPerToken => 1;

    public long Samples(Split split) => split == Split.Train ? TrainSamples : ValidationSamples;

    /// <summary>The <c>context + 1</c> bytes of sample <paramref name="id"/> of <paramref name="split"/>.</summary>
    public ReadOnlySpan<byte> Window(Split split, long id)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(id);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(id, Samples(split));
        var start = (split == Split.Train ? 0 : _boundary) + (int)(id * Context);
        return _bytes.AsSpan(start, Context + 1);
    }

    public void Window(Split split, long id, Span<long> destination)
    {
        var window = Window(split, id);
        for (var t = 0; t < window.Length; t++)
            destination[t] = window[t];
    }

    public void Dispose() { }   // the bytes are an array; nothing to release

    private long WindowsIn(int length) => length < Context + 1 ? 0 : (length - 1) / Context;
}
