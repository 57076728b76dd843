using System.Text;

namespace Pretrain.Data.Tokenizers;

/// <summary>
/// UTF-8 bytes as tokens: ids 0-255, then [CLS] 256, [SEP] 257, [MASK] 258, [PAD] 259 (260 ids, so
/// shards store uint16). No merges, no unknown tokens: any text round-trips exactly.
/// </summary>
public sealed class ByteTokenizer : ITokenizer
{
    public const string TokenizerName = "byte";
    private const int Ordinary = 256;

    public string Name => TokenizerName;
    public int VocabularySize => Ordinary + SpecialTokenText.Names.Count;
    public SpecialTokens Specials { get; } = SpecialTokenText.After(Ordinary);

    public void Encode(string text, List<int> ids)
    {
        // Strings over ~1 MB would put a large array on the LOH per call; documents are cut to 64 KiB
        // passages (TextSources) so this stays a short-lived ~64-256 KB buffer.
        var bytes = Encoding.UTF8.GetBytes(text);
        ids.EnsureCapacity(ids.Count + bytes.Length);
        foreach (var b in bytes)
            ids.Add(b);
    }

    public string Decode(ReadOnlySpan<int> ids) => SpecialTokenText.Decode(ids, Ordinary, Specials, DecodeBytes);

    private static string DecodeBytes(ReadOnlySpan<int> ids)
    {
        var bytes = new byte[ids.Length];
        for (var i = 0; i < ids.Length; i++)
            bytes[i] = (byte)ids[i];
        return Encoding.UTF8.GetString(bytes);
    }
}
