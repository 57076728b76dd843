using System.Text;
using System.Text.Json.Nodes;
using Pretrain.Data.Preparation;
using Pretrain.Data.Shards;
using Pretrain.Data.Tokenizers;
using Xunit;
using static Pretrain.Tests.Text.TextPreparations;

namespace Pretrain.Tests.Text;

public class TextPreparationTests
{
    private static JsonObject Index(string output) => JsonNode.Parse(File.ReadAllBytes(Path.Combine(output, ShardIndex.FileName)))!.AsObject();

    [Fact]
    public void Kjv_prepares_to_shards_whose_decoded_tokens_equal_the_text()
    {
        var input = Folder(("kjv-genesis.txt", Genesis));
        // 64 KiB shards hold ~32k input bytes (2 bytes a token): one 64 KiB passage each.
        var spec = Spec(input, shardBytes: 64 << 10);
        var plan = Prepare(spec);

        Assert.True(plan.Tasks.Count >= 3, $"{plan.Tasks.Count} tasks");
        Assert.All(plan.Tasks, t => Assert.True(plan.IsDone(t)));
        var documents = Documents(spec.Output, "train");
        Assert.All(documents, d => Assert.InRange(d.Length, 1, Pretrain.Data.Text.TextCorpus.PassageBytes));
        var tokenizer = new ByteTokenizer();
        Assert.Equal(Genesis, string.Concat(documents.Select(d => tokenizer.Decode(d))));

        var index = ShardIndex.Load(spec.Output);
        Assert.Equal(("tokens", "uint16", "byte", 260), (index.Kind, index.DType, index.Tokenizer!.Name, index.Tokenizer.VocabularySize));
        Assert.Equal(257, index.Tokenizer.SpecialTokens!["[SEP]"]);
        Assert.Equal(["train"], index.Splits.Keys);
        Assert.Equal(Encoding.UTF8.GetByteCount(Genesis), (long)Index(spec.Output)["splits"]!["train"]!["tokens"]!);
    }

    [Fact]
    public void Validation_takes_whole_documents_by_seed_and_both_splits_cover_the_corpus()
    {
        // 40 files of one line: 10% validation is exactly 4 documents.
        var files = Enumerable.Range(0, 40).Select(i => ($"book-{i:D2}.txt", $"Chapter {i}: and it was so.\n")).ToArray();
        var input = Folder(files);
        var first = Prepare(Spec(input, validation: 0.1, seed: 1));
        var again = Prepare(Spec(input, validation: 0.1, seed: 1));
        var other = Prepare(Spec(input, validation: 0.1, seed: 2));

        var tokenizer = new ByteTokenizer();
        string[] Texts(IPreparationPlan plan, string split) => [.. Documents(plan.OutputDirectory, split).Select(d => tokenizer.Decode(d))];
        var validation = Texts(first, "validation");
        Assert.Equal(4, validation.Length);
        Assert.Equal(36, Texts(first, "train").Length);
        Assert.Equal(files.Select(f => f.Item2).Order(), Texts(first, "train").Concat(validation).Order());
        Assert.Equal(validation, Texts(again, "validation"));
        Assert.NotEqual(validation, Texts(other, "validation"));
    }

    [Fact]
    public void Two_runs_write_byte_identical_shards_index_and_vocabulary()
    {
        // 10 documents of 6,000 characters in two folders; 16 KiB shards hold ~2-3 of them each.
        var input = Folder([.. Enumerable.Range(0, 10).Select(i => ($"{(char)('a' + i % 2)}/part-{i}.txt", Genesis.Substring(i * 6_000, 6_000)))]);
        var first = Prepare(Spec(input, "cl100k_base", validation: 0.3, shardBytes: 16 << 10, compact: true));
        var second = PreparationPlans.Create(Spec(input, "cl100k_base", validation: 0.3, shardBytes: 16 << 10, compact: true));
        // Tasks in reverse order, as several workers might finish them.
        foreach (var task in second.Tasks.Reverse())
            second.Run(task, null, CancellationToken.None);
        second.Finish();

        var names = Directory.GetFiles(first.OutputDirectory).Select(Path.GetFileName).Order().ToArray();
        Assert.Equal(names, Directory.GetFiles(second.OutputDirectory).Select(Path.GetFileName).Order());
        Assert.Contains(CompactVocabulary.FileName, names);
        Assert.True(names.Count(n => n!.EndsWith(".shard")) >= 3);
        foreach (var name in names)
            Assert.Equal(File.ReadAllBytes(Path.Combine(first.OutputDirectory, name!)), File.ReadAllBytes(Path.Combine(second.OutputDirectory, name!)));
    }

    [Fact]
    public void A_damaged_shard_is_not_done_and_running_its_task_again_restores_it()
    {
        var spec = Spec(Folder(("g.txt", Genesis[..20_000])));
        var plan = Prepare(spec);
        var task = plan.Tasks.Single();
        var path = Path.Combine(spec.Output, $"{task.Id}.shard");
        var original = File.ReadAllBytes(path);
        var damaged = (byte[])original.Clone();
        damaged[500] ^= 0x40;
        File.WriteAllBytes(path, damaged);

        Assert.False(plan.IsDone(task));
        plan.Run(task, null, CancellationToken.None);
        Assert.True(plan.IsDone(task));
        Assert.Equal(original, File.ReadAllBytes(path));
    }

    [Fact]
    public void Cl100k_compact_shards_decode_to_the_text_through_the_vocabulary()
    {
        var text = Genesis[..12_000];
        var spec = Spec(Folder(("g.txt", text)), "cl100k_base", compact: true);
        Prepare(spec);

        var inner = TokenizerFactory.Create("cl100k_base");
        var vocabulary = CompactVocabulary.Load(spec.Output);
        var compact = new CompactTokenizer(inner, vocabulary);
        var original = Documents(spec.Output, "train").Single();
        Assert.Equal(text, inner.Decode(original));
        var map = vocabulary.CompactByOriginal(inner.VocabularySize);
        Assert.Equal(text, compact.Decode(original.Select(id => map[id]).ToArray()));
        Assert.Equal(original.Distinct().Count() + 4, vocabulary.VocabularySize);

        var tokenizer = Index(spec.Output)["tokenizer"]!;
        Assert.Equal(100_281, (int)tokenizer["vocabularySize"]!);
        Assert.Equal(vocabulary.VocabularySize, (int)tokenizer["compact"]!["vocabularySize"]!);
        Assert.Equal(vocabulary.VocabularySize - 3, (int)tokenizer["compact"]!["specialTokens"]!["[SEP]"]!);
    }

    [Fact]
    public void Jsonl_documents_are_the_named_field_of_each_line()
    {
        var lines = "{\"id\": 1, \"text\": \"In the beginning\"}\n\n  \n{\"text\": \"tab\\there \\u00e9\\n\\\"quoted\\\"\", \"id\": 2}\r\n{\"text\": \"\"}\n{\"text\": \"last, no newline\"}";
        var spec = Spec(Folder(("corpus.jsonl", lines)), jsonField: "text");
        Prepare(spec);
        var tokenizer = new ByteTokenizer();
        Assert.Equal(["In the beginning", "tab\there é\n\"quoted\"", "", "last, no newline"],
            Documents(spec.Output, "train").Select(d => tokenizer.Decode(d)));
    }

    [Fact]
    public void A_long_line_is_cut_between_characters_and_decodes_whole()
    {
        // 100 KB of 3- and 4-byte characters without a line break: a cut at exactly 64 KiB would split one.
        var text = "ab" + string.Concat(Enumerable.Repeat("東京🚀", 10_000)) + "x"; // byte 65,536 falls inside 京
        var spec = Spec(Folder(("long.txt", text)));
        Prepare(spec);
        var documents = Documents(spec.Output, "train");
        Assert.Equal(2, documents.Count);
        var tokenizer = new ByteTokenizer();
        Assert.All(documents, d => Assert.DoesNotContain('\uFFFD', tokenizer.Decode(d)));
        Assert.Equal(text, string.Concat(documents.Select(d => tokenizer.Decode(d))));
    }
}
