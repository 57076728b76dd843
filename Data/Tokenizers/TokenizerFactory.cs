namespace Pretrain.Data.Tokenizers;

/// <summary>Tokenizers by the name a recipe or <c>pretrain prepare --tokenizer</c> gives.</summary>
public static class TokenizerFactory
{
    public static readonly IReadOnlyList<string> Names = [ByteTokenizer.TokenizerName, .. TiktokenBpeTokenizer.Encodings];

    /// <summary>Throws <see cref="InvalidDataException"/> naming the known tokenizers when <paramref name="name"/> is not one.</summary>
    public static void CheckName(string name)
    {
        if (!Names.Contains(name, StringComparer.Ordinal))
            throw new InvalidDataException($"unknown tokenizer '{name}'; expected one of {string.Join(", ", Names)}");
    }

    /// <summary>A new tokenizer; tiktoken encodings take ~0.5 s to load their 100-200k ranks, so keep it.</summary>
    public static ITokenizer Create(string name)
    {
        CheckName(name);
        return name == ByteTokenizer.TokenizerName ? new ByteTokenizer() : new TiktokenBpeTokenizer(name);
    }
}
