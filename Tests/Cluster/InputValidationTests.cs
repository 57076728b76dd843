using System.Text.RegularExpressions;
using Pretrain.Cli.Runs;
using Pretrain.Coordinator.Summary;
using Pretrain.Tests.Infrastructure;
using Xunit;

namespace Pretrain.Tests.Cluster;

/// <summary>
/// Input the CLI must refuse or answer at once (issue 11): YAML syntax errors name their line and field, option
/// values out of range exit 2 naming the option, `status` of a finished run reads its summary.json. No training.
/// </summary>
public sealed class InputValidationTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("pretrain-input-").FullName;
    static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    string Recipe(string name, Func<string, string> edit) => RepoPaths.EditedTinyRecipe(_dir, name, edit);

    /// <summary>1-based number of the first line of <paramref name="recipe"/> that starts with <paramref name="start"/>.</summary>
    static int LineOf(string recipe, string start) =>
        Array.FindIndex(File.ReadAllLines(recipe), l => l.StartsWith(start, StringComparison.Ordinal)) + 1;

    static void NoStackTrace(string output) =>
        Assert.DoesNotContain(output.Split('\n'), l => Regex.IsMatch(l, @"^\s+at \S+\(|^\s+at \S+\.\S+ in "));

    async Task<string> RefusedRecipeAsync(string recipe)
    {
        string runDir = Path.Combine(_dir, "run");
        var (code, output) = await CliProcess.RunAsync(Timeout, "local", "--recipe", recipe, "--run-dir", runDir);
        Assert.True(code == 2, $"exit code {code}, expected 2. Output:\n{output}");
        Assert.Contains(recipe, output);
        NoStackTrace(output);
        Assert.False(Directory.Exists(runDir), "nothing may be written for a refused recipe");
        return output;
    }

    [Theory]
    [InlineData("  width: 64", "  width: [64", "model.width", "width: [64", "[")]
    [InlineData("  betas: [0.9, 0.95]", "  betas: {0.9, 0.95", "optimizer.betas", "betas: {0.9, 0.95", "{")]
    public async Task An_unclosed_flow_collection_is_refused_naming_its_line_and_field(string line, string broken, string field, string shown, string opener)
    {
        string recipe = Recipe("unclosed.yaml", t => t.Replace(line, broken));
        string output = await RefusedRecipeAsync(recipe);
        Assert.Contains($"{field}: line {LineOf(recipe, broken)}: `{shown}` opens a {opener} that is never closed", output);
    }

    [Fact]
    public async Task A_list_as_a_field_name_is_refused_naming_its_section_and_line()
    {
        // YamlDotNet loads `[a, b]: 1` as a mapping with a sequence for its key; reading it as a field name threw InvalidCastException.
        string recipe = Recipe("complex-key.yaml", t => t.Replace("  dropout: 0.0", "  dropout: 0.0\n  [a, b]: 1"));
        string output = await RefusedRecipeAsync(recipe);
        Assert.Contains($"model: line {LineOf(recipe, "  [a, b]")}: expected a field name", output);
    }

    [Fact]
    public async Task A_field_given_twice_is_refused_naming_both_lines()
    {
        string recipe = Recipe("twice.yaml", t => t.Replace("  heads: 2", "  heads: 2\n  heads: 4"));
        string output = await RefusedRecipeAsync(recipe);
        Assert.Contains($"model.heads: line {LineOf(recipe, "  heads: 4")}: given twice (first on line {LineOf(recipe, "  heads: 2")})", output);
    }

    [Theory]
    [InlineData("local", "--max-steps", "-1", "--max-steps must be at least 1, got -1.")]
    [InlineData("local", "--max-steps", "0", "--max-steps must be at least 1, got 0.")]
    [InlineData("local", "--timeout", "0", "--timeout must be at least 1, got 0.")]
    [InlineData("local", "--metrics-port", "-2", "--metrics-port must be at least -1, got -2.")]
    [InlineData("local", "--metrics-port", "65536", "--metrics-port must be at most 65535, got 65536.")]
    [InlineData("local", "--worker-metrics-port", "70000", "--worker-metrics-port must be at most 65535, got 70000.")]
    [InlineData("coordinator", "--port", "-1", "--port must be at least 0, got -1.")]
    [InlineData("coordinator", "--port", "65536", "--port must be at most 65535, got 65536.")]
    [InlineData("coordinator", "--max-steps", "-5", "--max-steps must be at least 1, got -5.")]
    [InlineData("worker", "--threads", "-1", "--threads must be at least 0, got -1.")]
    [InlineData("worker", "--data-port", "65536", "--data-port must be at most 65535, got 65536.")]
    [InlineData("worker", "--metrics-port", "-3", "--metrics-port must be at least -1, got -3.")]
    public async Task An_option_value_out_of_range_exits_2_naming_the_option(string command, string option, string value, string expected)
    {
        // The recipe need not exist: options are checked before anything is read. A worker that got past the check
        // would give up on its coordinator (nothing listens on port 1) after a second.
        string[] args = command == "worker"
            ? ["worker", "--coordinator", "127.0.0.1:1", "--coordinator-timeout", "1", option, value]
            : [command, "--recipe", Path.Combine(_dir, "unused.yaml"), "--run-dir", Path.Combine(_dir, "run"), option, value];
        var (code, output) = await CliProcess.RunAsync(Timeout, args);
        Assert.True(code == 2, $"exit code {code}, expected 2. Output:\n{output}");
        Assert.Contains(expected, output);
        Assert.Contains($"pretrain {command} --help", output);
        NoStackTrace(output);
    }

    static RunSummary Completed(string lastCheckpoint) => new()
    {
        Status = "completed",
        Method = "gpt",
        WorldSize = 2,
        Steps = 30,
        FinalLoss = 2.5,
        SamplesPerSecond = 100,
        ReplicaChecksums = new Dictionary<string, string> { ["0"] = "00000000000000aa", ["1"] = "00000000000000aa" },
        Eval = new Dictionary<string, double>(),
        Generation = 1,
        LastCheckpoint = lastCheckpoint,
        WallSeconds = 12.5,
    };

    [Fact]
    public async Task Status_of_a_finished_run_prints_its_summary_at_once_without_its_gone_coordinator()
    {
        string run = Directory.CreateDirectory(Path.Combine(_dir, "finished")).FullName;
        string checkpoint = Path.Combine(run, "checkpoints", "step-00000030");
        // A coordinator that started a minute ago on a port nothing listens on now, then wrote summary.json and exited.
        new CoordinatorFile("127.0.0.1", FreePorts.Next(), null, 999_999, DateTime.UtcNow.AddMinutes(-1)).Write(run);
        await Completed(checkpoint).WriteAsync(run);

        // Asking the gone coordinator would take the whole --timeout (10 s by default).
        var (code, output) = await CliProcess.RunAsync(TimeSpan.FromSeconds(3), "status", "--run-dir", run);
        Assert.True(code == 0, $"exit code {code}, expected 0. Output:\n{output}");
        Assert.Contains("completed", output);
        Assert.Contains("30", output);
        Assert.Contains("2.5", output);
        Assert.Contains(checkpoint, output);
        NoStackTrace(output);
    }

    [Fact]
    public async Task Status_of_a_run_whose_summary_predates_its_coordinator_asks_the_coordinator()
    {
        string run = Directory.CreateDirectory(Path.Combine(_dir, "resumed")).FullName;
        // summary.json of an earlier segment; the coordinator that started since (a --resume) has not written one.
        string summary = await Completed(Path.Combine(run, "checkpoints", "step-00000030")).WriteAsync(run);
        File.SetLastWriteTimeUtc(summary, DateTime.UtcNow.AddHours(-1));
        new CoordinatorFile("127.0.0.1", FreePorts.Next(), null, 999_999, DateTime.UtcNow).Write(run);

        var (code, output) = await CliProcess.RunAsync(Timeout, "status", "--run-dir", run, "--timeout", "1");
        Assert.True(code == 2, $"exit code {code}, expected 2. Output:\n{output}");
        Assert.Contains("did not answer", output);
        Assert.DoesNotContain("completed", output);
        NoStackTrace(output);
    }

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }
}
