using Pretrain.Tests.Infrastructure;
using Xunit;

namespace Pretrain.Tests.Cluster;

/// <summary>Bad input to the real CLI: a clear message naming the file, field or option, exit code 2, nothing written.</summary>
public sealed class BadInputTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("pretrain-bad-").FullName;
    static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    string Recipe(string name, Func<string, string> edit) => RepoPaths.EditedTinyRecipe(_dir, name, edit);

    [Fact]
    public async Task A_recipe_with_an_unknown_field_is_refused_naming_the_file_and_field()
    {
        string recipe = Recipe("typo.yaml", t => t.Replace("  layers: 2", "  layerz: 2"));
        string runDir = Path.Combine(_dir, "run");
        var (code, output) = await CliProcess.RunAsync(Timeout, "local", "--recipe", recipe, "--run-dir", runDir);
        Assert.Equal(2, code);
        Assert.Contains(recipe, output);
        Assert.Contains("model.layerz", output);
        Assert.False(Directory.Exists(runDir), "nothing may be written for a refused recipe");
    }

    [Fact]
    public async Task More_workers_than_samples_in_a_step_are_refused_naming_the_field()
    {
        // batch.global 12: any world size up to 12 keeps the batch (shares differ by one); 13 would leave a rank idle.
        var (code, output) = await CliProcess.RunAsync(Timeout, "local", "--recipe", Recipe("ok.yaml", t => t), "--workers", "13",
            "--run-dir", Path.Combine(_dir, "run"));
        Assert.Equal(2, code);
        Assert.Contains("batch.global", output);
    }

    [Fact]
    public async Task An_option_value_out_of_range_exits_2_naming_the_option_and_where_help_is()
    {
        var (code, output) = await CliProcess.RunAsync(Timeout, "local", "--recipe", Recipe("ok.yaml", t => t), "--workers", "0");
        Assert.Equal(2, code);
        Assert.Contains("--workers must be at least 1, got 0", output);
        Assert.Contains("pretrain local --help", output);
    }

    [Fact]
    public async Task A_recipe_whose_text_file_is_missing_is_refused_naming_the_field_before_any_worker_starts()
    {
        string missing = Path.Combine(_dir, "no-such.txt");
        string runDir = Path.Combine(_dir, "run");
        var (code, output) = await CliProcess.RunAsync(Timeout, "local", "--recipe", Recipe("text.yaml", t => t.Replace(RepoPaths.KjvText, missing)),
            "--run-dir", runDir);
        Assert.Equal(2, code);
        Assert.Contains($"data.text: {missing} does not exist", output);
        Assert.False(Directory.Exists(runDir), "nothing may be written for a refused recipe");
    }

    [Fact]
    public async Task A_vision_recipe_whose_folder_is_not_prepared_is_refused_with_the_command_that_prepares_it()
    {
        string folder = Path.Combine(_dir, "my-images");
        string recipe = Path.Combine(_dir, "vision.yaml");
        File.WriteAllText(recipe, File.ReadAllText(RepoPaths.Recipe("simclr-fashion-mnist.yaml")).Replace("../data/fashion-mnist", folder));
        var (code, output) = await CliProcess.RunAsync(Timeout, "local", "--recipe", recipe, "--run-dir", Path.Combine(_dir, "run"));
        Assert.Equal(2, code);
        Assert.Contains($"data.images: {folder} holds no prepared dataset", output);
        Assert.Contains($"pretrain prepare fashion-mnist|cifar10|images --output {folder}", output);
    }

    [Fact]
    public async Task A_missing_recipe_file_is_named()
    {
        string missing = Path.Combine(_dir, "nope.yaml");
        var (code, output) = await CliProcess.RunAsync(Timeout, "local", "--recipe", missing);
        Assert.Equal(2, code);
        Assert.Contains(missing, output);
    }

    [Fact]
    public async Task Resume_without_checkpoints_says_so()
    {
        var (code, output) = await CliProcess.RunAsync(Timeout, "local", "--recipe", Recipe("ok.yaml", t => t), "--resume",
            "--run-dir", Path.Combine(_dir, "empty"));
        Assert.Equal(2, code);
        Assert.Contains("holds no checkpoint to resume from", output);
        Assert.Contains("--resume-or-start", output);
    }

    [Fact]
    public async Task A_worker_with_a_malformed_coordinator_address_is_told_what_was_expected()
    {
        var (code, output) = await CliProcess.RunAsync(Timeout, "worker", "--coordinator", "localhost");
        Assert.NotEqual(0, code);
        Assert.Contains("HOST:PORT", output);
    }

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }
}
