using System.Globalization;
using Pretrain.Shared.Recipes;
using Pretrain.Worker.Collectives;
using Pretrain.Worker.Host;
using Pretrain.Worker.Training;

namespace Pretrain.Bench.StepOverhead;

/// <summary>
/// What our training loop costs over the plainest one: per recipe, the same model, batches, loss and optimizer
/// stepped by a bare TorchSharp loop (<see cref="BareLoop"/>) and by our <see cref="Trainer"/> on one worker
/// (<see cref="SingleRank"/>), each in a fresh process with 1 torch thread, taking turns round after round (the
/// order flipped every round) so machine noise falls on both alike. Per run: the median step after warm-up, the
/// step phases, and the process's user and kernel CPU time over the measured steps (<c>/proc/self/stat</c>).
/// Prints a Markdown table and the verdicts. Usage:
/// Pretrain.Bench.StepOverhead [--recipes A.yaml,B.yaml] [--steps 30] [--warmup 5] [--rounds 3] [--clock-ticks 100]
/// </summary>
public static class Program
{
    private const double StepGoal = 1.05;          // issue 15: our step at most 5% slower than the bare loop's
    private const double KernelGoal = 0.15;        // issue 15: under 15% of the wall time in the kernel
    private static readonly TimeSpan ChildTimeout = TimeSpan.FromMinutes(30);

    public static async Task<int> Main(string[] args)
    {
        Options o;
        try { o = Options.Parse(args); }
        catch (ArgumentException e) { Console.Error.WriteLine(e.Message); return 2; }
        if (o.ChildLoop is { } loop) return await RunChildAsync(loop, o);

        var results = o.Recipes.ToDictionary(r => r, _ => Variants.ToDictionary(v => v, _ => new List<StepWindow>()));
        for (var round = 1; round <= o.Rounds; round++)
            foreach (var recipe in o.Recipes)
                foreach (var variant in round % 2 == 1 ? Variants : Variants.Reverse())
                {
                    StepWindow? measured = null;
                    var ok = await RankProcesses.RunAloneAsync(o.ChildArguments(variant, recipe),
                        line => measured = StepWindow.Parse(line) ?? measured, ChildTimeout);
                    if (!ok || measured is null) { Console.Error.WriteLine($"round {round}, {Name(recipe)}, {variant.Label}: the run failed"); return 1; }
                    Console.Error.WriteLine($"round {round}, {Name(recipe)}, {variant.Label}: {Ms(measured.MedianStepMs())} ms/step, " +
                        $"kernel {Pct(measured.CpuShare(o.ClockTicks).System)} of the wall time");
                    results[recipe][variant].Add(measured);
                }
        Print(o, results);
        return 0;
    }

    /// <summary>A loop and the C heap it runs on: glibc's default, or kept as `pretrain` keeps it (<see cref="NativeHeap"/>).</summary>
    private sealed record Variant(string Loop, bool KeepHeap, string Label);

    /// <summary>The bare loop on glibc's default heap (what a plain TorchSharp program gets), the bare loop on the heap our
    /// processes keep (the reference of the goal: the same memory, so the ratio is the loop's own cost), and ours.</summary>
    private static readonly Variant[] Variants =
    [
        new("bare", KeepHeap: false, "bare loop, default heap"),
        new("bare", KeepHeap: true, "bare loop"),
        new("ours", KeepHeap: true, "our Trainer"),
    ];

    private static string Name(string recipe) => Path.GetFileNameWithoutExtension(recipe);

    private static string Ms(double v) => v.ToString("F1", CultureInfo.InvariantCulture);

    private static string Pct(double v) => (100 * v).ToString("F1", CultureInfo.InvariantCulture) + "%";

    private static void Print(Options o, Dictionary<string, Dictionary<Variant, List<StepWindow>>> results)
    {
        static double Median(IEnumerable<double> values) => StepWindow.Median(values);

        Console.WriteLine("| recipe | loop | step (ms) | vs bare | data | forward | backward | allreduce | optimizer | other | user | kernel | minor faults/step |");
        Console.WriteLine("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        var ratios = new List<(string Recipe, double Ratio)>();
        var kernel = new List<(string Recipe, double Share)>();
        foreach (var (recipe, byVariant) in results)
        {
            var bareStep = Median(byVariant[Variants[1]].Select(w => w.MedianStepMs()));   // the reference: the bare loop on the same heap
            foreach (var (variant, runs) in byVariant)
            {
                bool bare = variant.Loop == "bare";
                var step = Median(runs.Select(w => w.MedianStepMs()));
                var phases = Enumerable.Range(0, 5).Select(i => Median(runs.Select(w => w.PhaseMs[i]))).ToArray();
                var other = Median(runs.Select(w => w.OtherMs()));
                var user = Median(runs.Select(w => w.CpuShare(o.ClockTicks).User));
                var system = Median(runs.Select(w => w.CpuShare(o.ClockTicks).System));
                var faults = Median(runs.Select(w => (double)w.Cpu.MinorFaults / w.StepMs.Length));
                string Phase(int i) => bare && (i is 0 or 3) ? "—" : Ms(phases[i]);   // the bare loop has no data or allreduce phase
                Console.WriteLine($"| {Name(recipe)} | {variant.Label} | {Ms(step)} | {(step / bareStep).ToString("F2", CultureInfo.InvariantCulture)}x | " +
                    $"{Phase(0)} | {Phase(1)} | {Phase(2)} | {Phase(3)} | {Phase(4)} | {Ms(other)} | {Pct(user)} | {Pct(system)} | {faults.ToString("F0", CultureInfo.InvariantCulture)} |");
                if (bare) continue;
                ratios.Add((Name(recipe), step / bareStep));
                kernel.Add((Name(recipe), system));
            }
        }
        Console.WriteLine();
        Console.WriteLine($"Goal, our step at most {StepGoal.ToString("F2", CultureInfo.InvariantCulture)}x the bare loop's: " + string.Join("; ", ratios.Select(r =>
            string.Create(CultureInfo.InvariantCulture, $"{r.Recipe} {r.Ratio:F2}x ({(r.Ratio <= StepGoal ? "met" : $"missed by {r.Ratio - StepGoal:F2}x")})"))) + ".");
        Console.WriteLine($"Kernel time through our Trainer (/proc/self/stat), goal under {Pct(KernelGoal)} of the wall time: " + string.Join("; ", kernel.Select(k =>
            $"{k.Recipe} {Pct(k.Share)} ({(k.Share < KernelGoal ? "met" : "missed")})")) + ".");
    }

    /// <summary>One measured run in this process: the bare loop or our Trainer on one worker, 1 torch thread.</summary>
    private static async Task<int> RunChildAsync(string loop, Options o)
    {
        TorchSharp.torch.set_num_threads(1);
        if (o.KeepHeap) NativeHeap.KeepFreedMemory();   // first, as `pretrain`'s Main does
        var recipe = StepProbe.RecipeFor(RecipeLoader.Load(o.ChildRecipe!), o.Warmup, o.Steps);
        var window = loop == "bare" ? BareLoop.Run(recipe, o.Warmup, o.Steps) : await TrainerAsync(recipe, o);
        Console.WriteLine(window.ToLine());
        return 0;
    }

    /// <summary>Our Trainer with one rank (collectives are the identity), checkpoints and evaluations outside the measured steps.</summary>
    private static async Task<StepWindow> TrainerAsync(Recipe recipe, Options o)
    {
        var run = Directory.CreateTempSubdirectory("pretrain-bench-step-overhead-").FullName;
        try
        {
            using var trainer = new Trainer(recipe, rank: 0, worldSize: 1, new SingleRank(), run, _ => { });
            using var probe = new StepProbe(o.Warmup, o.Steps);
            try { await trainer.RunAsync(recipe.Steps, resume: false, probe, probe.Token); }
            catch (OperationCanceledException) when (probe.Window is not null) { }   // the probe stops the run after the measured steps
            return probe.Window ?? throw new InvalidOperationException($"the run ended before step {o.Warmup + o.Steps}");
        }
        finally
        {
            try { Directory.Delete(run, recursive: true); } catch (IOException) { }
        }
    }

    private sealed record Options
    {
        private const string Usage =
            "usage: Pretrain.Bench.StepOverhead [--recipes A.yaml,B.yaml] [--steps 30] [--warmup 5] [--rounds 3] [--clock-ticks 100]";

        public string[] Recipes { get; private init; } = ["recipes/gpt-kjv-demo.yaml", "recipes/simclr-fashion-mnist.yaml"];
        public int Steps { get; private init; } = 30;
        public int Warmup { get; private init; } = 5;
        public int Rounds { get; private init; } = 3;
        public int ClockTicks { get; private init; } = 100;   // getconf CLK_TCK: the unit of /proc/self/stat's times
        public string? ChildLoop { get; private init; }
        public string? ChildRecipe { get; private init; }
        public bool KeepHeap { get; private init; }

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
                    "--steps" => o with { Steps = NextInt() },
                    "--warmup" => o with { Warmup = NextInt() },
                    "--rounds" => o with { Rounds = NextInt() },
                    "--clock-ticks" => o with { ClockTicks = NextInt() },
                    "--child" => o with { ChildLoop = Checked(Next()) },
                    "--child-recipe" => o with { ChildRecipe = Next() },
                    "--keep-heap" => o with { KeepHeap = true },
                    "--help" or "-h" => throw new ArgumentException(Usage),
                    var s => throw new ArgumentException($"unknown argument {s}; see --help"),
                };
            }
            if (o.Steps < 1 || o.Warmup < 1 || o.Rounds < 1 || o.ClockTicks < 1)
                throw new ArgumentException("--steps, --warmup, --rounds and --clock-ticks must be at least 1");
            if (o.ChildLoop is not null && o.ChildRecipe is null)
                throw new ArgumentException("--child needs --child-recipe");
            return o;
        }

        private static string Checked(string loop) => loop is "bare" or "ours" ? loop : throw new ArgumentException($"--child is bare or ours, not {loop}");

        public IEnumerable<string> ChildArguments(Variant variant, string recipe) =>
            ["--child", variant.Loop, "--child-recipe", Path.GetFullPath(recipe), "--steps", $"{Steps}", "--warmup", $"{Warmup}",
             .. variant.KeepHeap ? new[] { "--keep-heap" } : []];
    }
}
