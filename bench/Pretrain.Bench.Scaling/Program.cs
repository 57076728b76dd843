using System.Globalization;
using Pretrain.Shared.Recipes;
using Pretrain.Worker.Collectives;
using Pretrain.Worker.Training;

namespace Pretrain.Bench.Scaling;

/// <summary>
/// Data-parallel scaling: per recipe, the same global batch trained by 1, 2, 4… rank processes over a loopback TCP
/// ring (our <see cref="RingCommunicator"/> and <see cref="Trainer"/>, as a worker runs them), 1 torch thread each,
/// the world sizes taking turns round after round so machine noise falls on all alike. Per run, on rank 0: samples
/// per second over the measured steps (global batch × steps / their wall time), the median step and the step
/// phases. Prints a Markdown table with the speed-up over 1 worker and the scaling efficiency (speed-up / workers).
/// Usage: Pretrain.Bench.Scaling [--recipes A.yaml,B.yaml] [--workers 1,2,4] [--steps 30] [--warmup 5] [--rounds 3]
/// </summary>
public static class Program
{
    private static readonly TimeSpan RunTimeout = TimeSpan.FromMinutes(30);

    public static async Task<int> Main(string[] args)
    {
        Options o;
        try { o = Options.Parse(args); }
        catch (ArgumentException e) { Console.Error.WriteLine(e.Message); return 2; }
        if (o.ChildRank is { } rank) return await RunRankAsync(rank, o);

        var batch = o.Recipes.ToDictionary(r => r, r => RecipeLoader.Load(r).Batch.Global);
        var results = o.Recipes.SelectMany(r => o.Workers.Select(n => (Recipe: r, Workers: n))).ToDictionary(k => k, _ => new List<StepWindow>());
        for (var round = 1; round <= o.Rounds; round++)
            foreach (var recipe in o.Recipes)
                foreach (var workers in o.Workers)
                {
                    StepWindow? measured = null;
                    var ok = await RankProcesses.RunAsync(workers, r => o.ChildArguments(r, recipe),
                        line => measured = StepWindow.Parse(line) ?? measured, RunTimeout);
                    if (!ok || measured is null) { Console.Error.WriteLine($"round {round}, {Name(recipe)}, {workers} worker(s): a rank failed"); return 1; }
                    Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"round {round}, {Name(recipe)}, {workers} worker(s): {SamplesPerSecond(measured, batch[recipe]):F1} samples/s, {measured.MedianStepMs():F1} ms/step"));
                    results[(recipe, workers)].Add(measured);
                }
        Print(o, batch, results);
        return 0;
    }

    private static string Name(string recipe) => Path.GetFileNameWithoutExtension(recipe);

    /// <summary>The median share of the gradient allreduce that ran while backward went on: "—" with one worker (nothing
    /// crosses the network) and "none" when the recipe places no marks (global batch norm reduces inside backward).</summary>
    private static string Hidden(List<StepWindow> runs)
    {
        var shares = runs.Select(w => w.HiddenShare()).Where(v => !double.IsNaN(v)).ToArray();
        if (shares.Length == 0) return "—";
        var share = StepWindow.Median(shares);
        return share == 0 ? "none" : (100 * share).ToString("F0", CultureInfo.InvariantCulture) + "%";
    }

    /// <summary>Global samples per second over the measured steps: every rank steps the whole global batch together.</summary>
    private static double SamplesPerSecond(StepWindow w, int globalBatch) => (double)globalBatch * w.StepMs.Length / w.WallSeconds;

    private static void Print(Options o, Dictionary<string, int> batch, Dictionary<(string Recipe, int Workers), List<StepWindow>> results)
    {
        static double Median(IEnumerable<double> values) => StepWindow.Median(values);
        static string F(double v, string format) => v.ToString(format, CultureInfo.InvariantCulture);

        Console.WriteLine("| recipe | workers | samples/s | speed-up | efficiency | step (ms) | data | forward | backward | allreduce | optimizer | buckets reduced (ms) | hidden behind backward |");
        Console.WriteLine("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        foreach (var recipe in o.Recipes)
        {
            var single = results.TryGetValue((recipe, 1), out var one) ? Median(one.Select(w => SamplesPerSecond(w, batch[recipe]))) : double.NaN;
            foreach (var workers in o.Workers)
            {
                var runs = results[(recipe, workers)];
                var rate = Median(runs.Select(w => SamplesPerSecond(w, batch[recipe])));
                var speedUp = rate / single;
                var phases = Enumerable.Range(0, 5).Select(i => F(Median(runs.Select(w => w.PhaseMs[i])), "F1"));
                Console.WriteLine($"| {Name(recipe)} | {workers} | {F(rate, "F1")} | {(double.IsNaN(speedUp) ? "—" : F(speedUp, "F2") + "x")} | " +
                    $"{(double.IsNaN(speedUp) ? "—" : F(100 * speedUp / workers, "F0") + "%")} | {F(Median(runs.Select(w => w.MedianStepMs())), "F1")} | {string.Join(" | ", phases)} | " +
                    $"{(workers == 1 ? "—" : F(Median(runs.Select(w => w.GradientAllReduceMs)), "F1"))} | {Hidden(runs)} |");
            }
        }
    }

    /// <summary>One rank: 1 torch thread, our ring and Trainer; rank 0 prints what the measured steps cost.</summary>
    private static async Task<int> RunRankAsync(int rank, Options o)
    {
        Pretrain.Worker.Host.NativeHeap.KeepFreedMemory();                  // as `pretrain`'s Main does for every worker
        var (listener, peers) = RankProcesses.Join("bench");             // first: the parent reads the port off the first line
        using var owned = listener;
        TorchSharp.torch.set_num_threads(1);
        var recipe = EndingAfterMeasurement(RecipeLoader.Load(o.ChildRecipe!), o.Warmup + o.Steps);
        await using var ring = new RingCommunicator(listener, 1, rank, peers, RankProcesses.Key, new CollectiveOptions());
        await ring.ConnectAsync();
        var run = Directory.CreateTempSubdirectory("pretrain-bench-scaling-").FullName;
        try
        {
            using var trainer = new Trainer(recipe, rank, peers.Length, ring, run, _ => { });
            using var probe = new StepProbe(o.Warmup, o.Steps);
            await trainer.RunAsync(recipe.Steps, resume: false, probe, CancellationToken.None);
            var window = probe.Window ?? throw new InvalidOperationException($"the run ended before step {o.Warmup + o.Steps}");
            if (rank == 0) Console.WriteLine(window.ToLine());
            return 0;
        }
        finally
        {
            try { Directory.Delete(run, recursive: true); } catch (IOException) { }
        }
    }

    /// <summary>
    /// The recipe ending at the last measured step, as a job ends: rank 0's final checkpoint and the evaluation come
    /// after the window, and the evaluation's collectives are the ranks' last meeting before they leave the ring. The
    /// evaluation is cut to a token size (one validation batch; kNN neighbours from 1,000 training images).
    /// </summary>
    private static Recipe EndingAfterMeasurement(Recipe recipe, long steps) => recipe with
    {
        Steps = steps,
        Checkpoint = recipe.Checkpoint with { Every = long.MaxValue },
        Eval = recipe.Eval with { Every = 0, Batches = Math.Min(recipe.Eval.Batches, 1), KnnTrainSamples = 1000 },
    };

    private sealed record Options
    {
        private const string Usage =
            "usage: Pretrain.Bench.Scaling [--recipes A.yaml,B.yaml] [--workers 1,2,4] [--steps 30] [--warmup 5] [--rounds 3]";

        public string[] Recipes { get; private init; } = ["recipes/gpt-kjv-demo.yaml", "recipes/simclr-fashion-mnist.yaml"];
        public int[] Workers { get; private init; } = [1, 2, 4];
        public int Steps { get; private init; } = 30;
        public int Warmup { get; private init; } = 5;
        public int Rounds { get; private init; } = 3;
        public int? ChildRank { get; private init; }
        public string? ChildRecipe { get; private init; }

        public static Options Parse(string[] args)
        {
            var o = new Options();
            for (var i = 0; i < args.Length; i++)
            {
                string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
                int NextInt() => int.Parse(Next(), CultureInfo.InvariantCulture);
                o = args[i] switch
                {
                    "--recipes" => o with { Recipes = [.. Next().Split(',', StringSplitOptions.RemoveEmptyEntries).Select(Path.GetFullPath)] },
                    "--workers" => o with { Workers = [.. Next().Split(',').Select(w => int.Parse(w, CultureInfo.InvariantCulture))] },
                    "--steps" => o with { Steps = NextInt() },
                    "--warmup" => o with { Warmup = NextInt() },
                    "--rounds" => o with { Rounds = NextInt() },
                    "--child" => o with { ChildRank = NextInt() },
                    "--child-recipe" => o with { ChildRecipe = Next() },
                    "--help" or "-h" => throw new ArgumentException(Usage),
                    var s => throw new ArgumentException($"unknown argument {s}; see --help"),
                };
            }
            if (o.Steps < 1 || o.Warmup < 1 || o.Rounds < 1 || o.Workers.Any(w => w < 1))
                throw new ArgumentException("--steps, --warmup, --rounds and every --workers count must be at least 1");
            if (o.ChildRank is not null && o.ChildRecipe is null)
                throw new ArgumentException("--child needs --child-recipe");
            return o;
        }

        public IEnumerable<string> ChildArguments(int rank, string recipe) =>
            ["--child", $"{rank}", "--child-recipe", Path.GetFullPath(recipe), "--steps", $"{Steps}", "--warmup", $"{Warmup}"];
    }
}
