using Pretrain.Data.Tokenizers;
using Pretrain.Tests.Training;
using Xunit;

namespace Pretrain.Tests.Tokenizers;

public class TokenizerTests
{
    private const string Sample = "In the beginning God created the heaven and the earth.\n\tÆsir, naïve café — 東京 🚀 \r\n  x";

    [Fact]
    public void Byte_tokenizer_round_trips_any_text_with_ids_below_256()
    {
        var tokenizer = TokenizerFactory.Create("byte");
        var ids = new List<int>();
        tokenizer.Encode(Sample, ids);
        Assert.Equal(System.Text.Encoding.UTF8.GetByteCount(Sample), ids.Count);
        Assert.All(ids, id => Assert.InRange(id, 0, 255));
        Assert.Equal(Sample, tokenizer.Decode(ids.ToArray()));
        Assert.Equal(260, tokenizer.VocabularySize);
    }

    [Theory]
    [InlineData("byte", 256)]
    [InlineData("cl100k_base", 100_277)]
    [InlineData("o200k_base", 200_019)]
    public void Special_tokens_are_distinct_and_follow_the_ordinary_vocabulary(string name, int ordinary)
    {
        var tokenizer = TokenizerFactory.Create(name);
        var s = tokenizer.Specials;
        int[] specials = [s.Cls, s.Sep, s.Mask, s.Pad];
        Assert.Equal(4, specials.Distinct().Count());
        Assert.All(specials, id => Assert.InRange(id, ordinary, tokenizer.VocabularySize - 1));
        Assert.Equal(ordinary + 4, tokenizer.VocabularySize);
        var ids = new List<int> { s.Cls };
        tokenizer.Encode("Let there be light", ids);
        ids.AddRange([s.Sep, s.Pad]);
        Assert.Equal("[CLS]Let there be light[SEP][PAD]", tokenizer.Decode(ids.ToArray()));
        Assert.All(ids, id => Assert.InRange(id, 0, tokenizer.VocabularySize - 1));
    }

    [Theory]
    [InlineData("cl100k_base")]
    [InlineData("o200k_base")]
    public void Tiktoken_encodings_round_trip_and_use_fewer_tokens_than_bytes(string name)
    {
        var tokenizer = TokenizerFactory.Create(name);
        var ids = new List<int>();
        tokenizer.Encode(Sample, ids);
        Assert.Equal(Sample, tokenizer.Decode(ids.ToArray()));
        Assert.InRange(ids.Count, 10, System.Text.Encoding.UTF8.GetByteCount(Sample) / 2);
        Assert.Throws<ArgumentOutOfRangeException>(() => tokenizer.Decode([tokenizer.VocabularySize]));
    }

    [Fact]
    public void An_unknown_tokenizer_is_an_error_listing_the_known_ones()
    {
        var error = Assert.Throws<InvalidDataException>(() => TokenizerFactory.Create("gpt9"));
        Assert.Contains("unknown tokenizer 'gpt9'", error.Message);
        Assert.Contains("byte, cl100k_base, o200k_base", error.Message);
    }

    [Fact]
    public void Compact_vocabulary_is_dense_ascending_and_invertible()
    {
        var inner = TokenizerFactory.Create("cl100k_base");
        var used = new bool[inner.VocabularySize];
        var corpus = new List<int>();
        inner.Encode(Sample, corpus);
        foreach (var id in corpus)
            used[id] = true;
        var vocabulary = CompactVocabulary.Build(inner, used);
        var ordinary = vocabulary.OriginalIds.Take(vocabulary.VocabularySize - 4).ToArray();
        Assert.Equal(corpus.Distinct().Order(), ordinary);
        Assert.Equal([inner.Specials.Cls, inner.Specials.Sep, inner.Specials.Mask, inner.Specials.Pad], vocabulary.OriginalIds.TakeLast(4));

        var map = vocabulary.CompactByOriginal(inner.VocabularySize);
        for (var compact = 0; compact < vocabulary.VocabularySize; compact++)
            Assert.Equal(compact, map[vocabulary.OriginalIds[compact]]);
        Assert.Equal(vocabulary.VocabularySize, map.Count(c => c >= 0));

        var tokenizer = new CompactTokenizer(inner, vocabulary);
        var ids = new List<int>();
        tokenizer.Encode(Sample, ids);
        Assert.All(ids, id => Assert.InRange(id, 0, tokenizer.VocabularySize - 5));
        Assert.Equal(Sample, tokenizer.Decode(ids.ToArray()));
        Assert.Equal("[MASK]", tokenizer.Decode([tokenizer.Specials.Mask]));
        Assert.Equal(tokenizer.VocabularySize - 1, tokenizer.Specials.Pad);
        var unseen = Assert.Throws<InvalidDataException>(() => tokenizer.Encode("Zyzzyva quokkas", []));
        Assert.Contains("not in the compact vocabulary", unseen.Message);
    }

    [Fact]
    public void Compact_vocabulary_survives_a_save_and_load_and_rejects_a_damaged_file()
    {
        var directory = TestRecipes.TemporaryDirectory();
        var vocabulary = new CompactVocabulary("byte", [10, 32, 101, 256, 257, 258, 259]);
        vocabulary.Save(directory);
        Assert.Equal(vocabulary.OriginalIds, CompactVocabulary.Load(directory).OriginalIds);
        File.WriteAllText(Path.Combine(directory, CompactVocabulary.FileName), "{\"tokenizer\": \"byte\", \"originalIds\": [1, 1");
        var error = Assert.Throws<InvalidDataException>(() => CompactVocabulary.Load(directory));
        Assert.Contains(CompactVocabulary.FileName, error.Message);
    }
}
