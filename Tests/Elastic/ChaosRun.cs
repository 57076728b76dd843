using System.IO.Hashing;
using System.Runtime.InteropServices;
using System.Text.RegularExpressions;
using Pretrain.Coordinator.Summary;
using Pretrain.Data;
using Pretrain.Data.Sampling;
using Pretrain.Shared.Messages;
using Pretrain.Tests.Infrastructure;

namespace Pretrain.Tests.Elastic;

/// <summary>
/// A real `pretrain local` run that a test hurts while it trains: SIGKILL, SIGTERM, SIGSTOP sent to its
/// worker processes by pid, at a moment chosen by what the run wrote (a checkpoint directory appearing).
/// Every wait is bounded; the process tree is killed when the test ends.
/// </summary>
public sealed partial class ChaosRun : IDisposable
{
    public static readonly TimeSpan RunTimeout = TimeSpan.FromMinutes(3);
    readonly CliProcess _cli;

    ChaosRun(CliProcess cli, string directory) => (_cli, Directory) = (cli, directory);

    public string Directory { get; }
    public string Output => _cli.Output;
    public RunSummary Summary => RunSummary.Read(Path.Combine(Directory, "summary.json"));

    /// <summary>The tiny GPT recipe with <paramref name="steps"/> steps and a checkpoint every <paramref name="checkpointEvery"/>.</summary>
    public static string TinyRecipe(string directory, long steps, long checkpointEvery = 10)
    {
        System.IO.Directory.CreateDirectory(directory);
        string text = File.ReadAllText(RepoPaths.Recipe("gpt-kjv-tiny.yaml"));
        text = Regex.Replace(text, @"(?m)^steps: \d+", $"steps: {steps}");
        text = Regex.Replace(text, @"(?m)^(\s+text: )\S+", "${1}" + RepoPaths.KjvText);
        text = Regex.Replace(text, @"(?m)^(\s+every: )\d+", "${1}" + checkpointEvery);
        string path = Path.Combine(directory, $"tiny-{steps}-{checkpointEvery}.yaml");
        File.WriteAllText(path, text);
        return path;
    }

    public static ChaosRun Start(string directory, string recipe, int workers, params string[] extra) =>
        Start(new Dictionary<string, string>(), directory, recipe, workers, extra);

    public static ChaosRun Start(IReadOnlyDictionary<string, string> environment, string directory, string recipe, int workers, params string[] extra) =>
        new(CliProcess.Start(environment, ["local", "--recipe", recipe, "--workers", workers.ToString(), "--run-dir", directory,
            "--metrics-port", "-1", "--worker-metrics-port", "-1", .. extra]), directory);

    /// <summary>
    /// Waits until rank 0 has published the checkpoint of <paramref name="step"/> or a later one: with
    /// <c>checkpoint.keep</c> a fast run may prune step 10's before a poll sees it (CI: 200 steps in 9.6 s).
    /// </summary>
    public async Task WaitForCheckpointAsync(long step, TimeSpan? timeout = null)
    {
        var limit = timeout ?? TimeSpan.FromMinutes(2);
        var deadline = DateTime.UtcNow + limit;
        string checkpoints = Path.Combine(Directory, "checkpoints");
        while (!Published(checkpoints).Any(s => s >= step))
        {
            if (_cli.HasExited) throw new InvalidOperationException($"the run exited before checkpoint {step}:\n{Output}");
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"no checkpoint of step {step} or later within {limit}:\n{Output}");
            await Task.Delay(20);
        }
    }

    internal static IEnumerable<long> Published(string checkpoints) =>
        System.IO.Directory.Exists(checkpoints)
            ? System.IO.Directory.EnumerateDirectories(checkpoints, "step-*").Select(d => long.TryParse(Path.GetFileName(d)[5..], out var s) ? s : -1)
            : [];

    public int Pid(string workerId) =>
        int.Parse(Regex.Matches(Output, Regex.Escape(workerId) + @" started (?:again )?\(pid (\d+)").Last().Groups[1].Value);

    /// <summary>The worker that holds rank 0 of generation 1, from the workers' logs (needs --verbose).</summary>
    public string RankZeroOfFirstGeneration(int workers) =>
        Enumerable.Range(0, workers).Select(i => $"worker-{i}")
            .First(w => File.ReadAllText(Path.Combine(Directory, "logs", w + ".log")).Contains("generation 1: rank 0 of", StringComparison.Ordinal));

    public void Signal(string workerId, int signal)
    {
        if (kill(Pid(workerId), signal) != 0) throw new InvalidOperationException($"kill({workerId}, {signal}) failed: errno {Marshal.GetLastPInvokeError()}");
    }

    public const int SigKill = 9, SigTerm = 15, SigStop = 19, SigCont = 18;

    [LibraryImport("libc", SetLastError = true)]
    private static partial int kill(int pid, int signal);

    public Task<int> WaitAsync() => _cli.WaitAsync(RunTimeout);

    /// <summary>The sample digest a run of <paramref name="steps"/> steps of the tiny recipe must end with: the definition, computed here.</summary>
    public static string TinyDigest(long steps)
    {
        var recipe = Pretrain.Shared.Recipes.RecipeLoader.Load(TinyRecipe(System.IO.Directory.CreateTempSubdirectory("digest-").FullName, steps));
        var text = (Pretrain.Shared.Recipes.TextData)recipe.Data;
        using var corpus = new ByteTextCorpus(text.TextPath, recipe.Transformer.Context, text.ValidationFraction);
        return Digest(recipe.Seed, corpus.TrainSamples, recipe.Batch.Global, steps);
    }

    /// <summary>summary.json's sample_digest by its definition: xxHash64 of each step's global batch of sample ids, chained through the seed.</summary>
    public static string Digest(long seed, long samples, int globalBatch, long steps)
    {
        var sampler = new GlobalBatchSampler(seed, samples, globalBatch);
        var ids = new long[globalBatch];
        ulong digest = 0;
        for (long s = 0; s < steps; s++)
        {
            sampler.GlobalBatchOf(s, ids);
            digest = XxHash64.HashToUInt64(MemoryMarshal.AsBytes(ids.AsSpan()), unchecked((long)digest));
        }
        return digest.ToString("x16");
    }

    /// <summary>The journal's events of type <typeparamref name="T"/>.</summary>
    public List<T> Journaled<T>() => [.. SqliteJournal.Read(Path.Combine(Directory, "journal.db")).OfType<T>()];

    public void Dispose() => _cli.Dispose();
}
