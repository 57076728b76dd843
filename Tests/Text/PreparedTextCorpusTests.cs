using Pretrain.Data;
using Pretrain.Data.Text;
using Pretrain.Data.Tokenizers;
using Pretrain.Tests.Training;
using Xunit;
using static Pretrain.Tests.Text.TextPreparations;

namespace Pretrain.Tests.Text;

/// <summary>`pretrain prepare text` output read back as the language methods' token stream.</summary>
public class PreparedTextCorpusTests
{
    static long[] Window(ITokenCorpus corpus, Split split, long id)
    {
        var window = new long[corpus.Context + 1];
        corpus.Window(split, id, window);
        return window;
    }

    [Fact]
    public void Byte_shards_become_each_split_s_documents_joined_by_SEP_cut_into_windows()
    {
        var input = Folder(("a.txt", "In the beginning God created the heaven and the earth."), ("b.txt", "And the earth was without form, and void."),
            ("c.txt", "And God said, Let there be light: and there was light."));
        var spec = Spec(input, validation: 0.34);                     // 3 documents: 1 validates
        Prepare(spec);
        using var corpus = new PreparedTextCorpus(spec.Output, context: 8);

        var specials = new ByteTokenizer().Specials;
        Assert.Equal(260, corpus.VocabularySize);
        Assert.Equal(specials, corpus.Specials);
        foreach (var (split, name) in new[] { (Split.Train, "train"), (Split.Validation, "validation") })
        {
            var stream = Documents(spec.Output, name).SelectMany(d => d.Append(specials.Sep)).ToArray();
            Assert.Equal((stream.Length - 1) / 8, corpus.Samples(split));
            for (long id = 0; id < corpus.Samples(split); id++)
                Assert.Equal(stream.Skip((int)id * 8).Take(9).Select(t => (long)t), Window(corpus, split, id));
        }
        var validation = Documents(spec.Output, "validation").Single();
        Assert.Equal((double)validation.Length / (validation.Length + 1), corpus.ValidationBytesPerToken, 12); // [SEP] is a token of no bytes
    }

    [Fact]
    public void A_compacted_cl100k_folder_gives_compact_ids_that_decode_to_the_text()
    {
        var spec = Spec(Folder(("genesis.txt", Genesis)), tokenizer: "cl100k_base", validation: 0.25, compact: true);
        Prepare(spec);
        using var corpus = new PreparedTextCorpus(spec.Output, context: 64);

        var compact = new CompactTokenizer(TokenizerFactory.Create("cl100k_base"), CompactVocabulary.Load(spec.Output));
        Assert.Equal(compact.VocabularySize, corpus.VocabularySize);
        Assert.True(corpus.VocabularySize < 10_000, $"compact vocabulary of Genesis: {corpus.VocabularySize}");
        Assert.Equal(compact.Specials, corpus.Specials);
        var ids = Enumerable.Range(0, (int)corpus.TrainSamples).SelectMany(i => Window(corpus, Split.Train, i).Take(64)).Select(t => (int)t).ToArray();
        Assert.All(ids, id => Assert.InRange(id, 0, corpus.VocabularySize - 1));
        // The windows hold the train documents (original cl100k ids in the shards), each ended by [SEP].
        var cl100k = TokenizerFactory.Create("cl100k_base");
        var expected = string.Concat(Documents(spec.Output, "train").Select(d => cl100k.Decode(d) + "[SEP]"));
        var decoded = compact.Decode(ids);
        Assert.True(decoded.Length > 100_000, $"decoded {decoded.Length} characters");
        Assert.True(expected.StartsWith(decoded, StringComparison.Ordinal), "the compact windows do not decode to the train documents");
        Assert.InRange(corpus.ValidationBytesPerToken, 3.0, 5.5);                   // English in cl100k: ~4 bytes a token
    }

    [Fact]
    public void A_folder_without_a_validation_split_is_refused_saying_how_to_prepare_one()
    {
        var spec = Spec(Folder(("a.txt", Genesis)), validation: 0);
        Prepare(spec);
        var e = Assert.Throws<InvalidDataException>(() => new PreparedTextCorpus(spec.Output, context: 8));
        Assert.Contains(spec.Output, e.Message);
        Assert.Contains("--validation-fraction", e.Message);
    }

    [Fact]
    public void A_context_longer_than_a_split_is_refused_naming_the_folder()
    {
        var spec = Spec(Folder(("a.txt", "short one."), ("b.txt", "and short two.")), validation: 0.5);
        Prepare(spec);
        var e = Assert.Throws<InvalidDataException>(() => new PreparedTextCorpus(spec.Output, context: 64));
        Assert.Contains(spec.Output, e.Message);
        Assert.Contains("fewer than one window of 65", e.Message);
    }

    [Fact]
    public void A_folder_that_is_not_prepared_is_named()
    {
        var folder = TestRecipes.TemporaryDirectory();
        var e = Assert.Throws<InvalidDataException>(() => new PreparedTextCorpus(folder, context: 8));
        Assert.Contains($"{folder}: no index.json", e.Message);
    }
}
