using Pretrain.Data.Preparation;
using Pretrain.Tests.Training;
using Xunit;
using static Pretrain.Tests.Text.TextPreparations;

namespace Pretrain.Tests.Text;

/// <summary>Each bad input gives an error naming the file, the line or offset, and what was expected; nothing is published.</summary>
public class TextBadInputTests
{
    private static InvalidDataException Fails(PrepareSpec spec)
    {
        var error = Assert.Throws<InvalidDataException>(() => Prepare(spec));
        Assert.False(File.Exists(Path.Combine(spec.Output, "index.json")));
        Assert.Empty(Directory.Exists(spec.Output) ? Directory.GetFiles(spec.Output, "*.tmp-*") : []);
        return error;
    }

    [Fact]
    public void Invalid_utf8_names_the_file_and_the_byte_offset()
    {
        var folder = TestRecipes.TemporaryDirectory();
        var path = Path.Combine(folder, "latin1.txt");
        File.WriteAllBytes(path, [.. "Caf"u8, 0xE9, .. " au lait\n"u8]);
        var error = Fails(Spec(folder));
        Assert.Contains($"{path}: byte offset 3: invalid UTF-8", error.Message);
    }

    [Fact]
    public void A_jsonl_line_that_is_not_json_names_the_file_and_line()
    {
        var folder = Folder(("c.jsonl", "{\"text\": \"ok\"}\n{\"text\": \"unterminated}\n"));
        var error = Fails(Spec(folder, jsonField: "text"));
        Assert.Contains($"{Path.Combine(folder, "c.jsonl")}: line 2: not JSON", error.Message);
    }

    [Theory]
    [InlineData("{\"body\": \"no text here\"}", "found no such field")]
    [InlineData("{\"text\": 42}", "found \"text\" as number")]
    [InlineData("[\"text\"]", "found a JSON array")]
    public void A_jsonl_line_without_the_string_field_says_what_was_expected(string line, string found)
    {
        var folder = Folder(("c.jsonl", "\n" + line + "\n"));
        var error = Fails(Spec(folder, jsonField: "text"));
        Assert.Contains("c.jsonl: line 2: expected an object with a string field \"text\"", error.Message);
        Assert.Contains(found, error.Message);
    }

    [Fact]
    public void Invalid_utf8_in_jsonl_names_the_line()
    {
        var folder = TestRecipes.TemporaryDirectory();
        File.WriteAllBytes(Path.Combine(folder, "c.jsonl"), [.. "{\"text\": \"a\"}\n{\"text\": \"b"u8, 0xFF, .. "\"}\n"u8]);
        var error = Fails(Spec(folder, jsonField: "text"));
        Assert.Contains("c.jsonl: line 2: invalid UTF-8 at byte offset 25", error.Message);
    }

    [Fact]
    public void An_empty_corpus_is_an_error_naming_the_inputs()
    {
        var folder = Folder(("empty.txt", ""), ("sub/also-empty.txt", ""), (".hidden.txt", "skipped"));
        var error = Assert.Throws<InvalidDataException>(() => PreparationPlans.Create(Spec(folder)));
        Assert.Contains($"text corpus is empty: {folder} hold no documents", error.Message);
        var jsonl = Folder(("blank.jsonl", "\n  \n"));
        Assert.Contains("JSONL lines with a \"text\" field",
            Assert.Throws<InvalidDataException>(() => PreparationPlans.Create(Spec(jsonl, jsonField: "text"))).Message);
    }

    [Fact]
    public void An_unknown_tokenizer_or_a_missing_input_fails_before_any_work()
    {
        var folder = Folder(("a.txt", "text"));
        var unknown = Assert.Throws<InvalidDataException>(() => PreparationPlans.Create(Spec(folder, tokenizer: "gpt9")));
        Assert.Contains("unknown tokenizer 'gpt9'; expected one of byte, cl100k_base, o200k_base", unknown.Message);
        var missing = Path.Combine(folder, "nope");
        Assert.Contains($"{missing}: not found",
            Assert.Throws<InvalidDataException>(() => PreparationPlans.Create(Spec(missing))).Message);
    }
}
