using Pretrain.Data;
using Pretrain.Tests.Training;
using Xunit;

namespace Pretrain.Tests.Data;

public class ByteTextCorpusTests
{
    private static string WriteText(string text)
    {
        var path = Path.Combine(TestRecipes.TemporaryDirectory(), "text.txt");
        File.WriteAllText(path, text);
        return path;
    }

    [Fact]
    public void Sample_i_is_the_window_of_context_plus_one_bytes_at_i_times_context()
    {
        var text = string.Concat(Enumerable.Range(0, 100).Select(i => (char)('a' + i % 26)));
        var corpus = new ByteTextCorpus(WriteText(text), context: 4, validationFraction: 0.2);
        Assert.Equal(19, corpus.TrainSamples);       // 80 train bytes: windows at 0, 4, …, 72 (76+5 > 80)
        Assert.Equal(4, corpus.ValidationSamples);   // 20 bytes: windows at 0, 4, 8, 12
        Assert.Equal("efghi", System.Text.Encoding.ASCII.GetString(corpus.Window(Split.Train, 1)));
        Assert.Equal(text.Substring(80 + 12, 5), System.Text.Encoding.ASCII.GetString(corpus.Window(Split.Validation, 3)));
        Assert.Throws<ArgumentOutOfRangeException>(() => corpus.Window(Split.Validation, 4));
    }

    [Fact]
    public void Missing_file_error_names_the_file()
    {
        var path = Path.Combine(TestRecipes.TemporaryDirectory(), "absent.txt");
        var e = Assert.Throws<InvalidDataException>(() => new ByteTextCorpus(path, 8, 0.1));
        Assert.Contains(path, e.Message);
        Assert.Contains("not found", e.Message);
    }

    [Fact]
    public void Empty_file_error_names_the_file_and_what_was_expected()
    {
        var path = WriteText("");
        var e = Assert.Throws<InvalidDataException>(() => new ByteTextCorpus(path, 8, 0.1));
        Assert.Contains(path, e.Message);
        Assert.Contains("empty", e.Message);
    }

    [Fact]
    public void File_too_small_for_one_window_per_split_names_the_size_needed()
    {
        var path = WriteText(new string('x', 40));
        var e = Assert.Throws<InvalidDataException>(() => new ByteTextCorpus(path, 8, 0.1));
        Assert.Contains(path, e.Message);
        Assert.Contains("window of 9 bytes", e.Message);
    }
}
