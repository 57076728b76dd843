using System.Globalization;
using Pretrain.Shared.Recipes;
using Pretrain.Shared.Telemetry;
using Pretrain.Worker.Collectives;
using Pretrain.Worker.Training;

namespace Pretrain.Bench.Reproducible;

/// <summary>
/// What reproducible runs cost: the same recipe, model and global batch trained by rank processes on a loopback
/// TCP ring, on the fast path and with <c>reproducible:</c> at several micro-shard counts, the configurations
/// taking turns round after round so machine noise falls on all of them alike. Per configuration: the median step
/// time after warm-up, the step phases, and the gradient allreduce (bytes per step; effective busBw = bytes /
/// allreduce phase time × 2(n−1)/n — for the exact sum the phase includes the max exchange and both conversions).
/// Prints a Markdown table. Usage:
/// Pretrain.Bench.Reproducible --recipe FILE [--workers 2] [--shards 0,2,8,32] [--steps 40] [--warmup 5] [--rounds 2]
/// (shards 0 = the fast path).
/// </summary>
public static class Program
{
    private static readonly string[] Phases =
        [PretrainMetrics.Phase.Data, PretrainMetrics.Phase.Forward, PretrainMetrics.Phase.Backward, PretrainMetrics.Phase.AllReduce, PretrainMetrics.Phase.Optimizer];

    public static async Task<int> Main(string[] args)
    {
        Options o;
        try { o = Options.Parse(args); }
        catch (ArgumentException e) { Console.Error.WriteLine(e.Message); return 2; }
        if (o.ChildRank is { } rank) return await RunRankAsync(rank, o);

        var results = o.Shards.ToDictionary(s => s, _ => new List<Measurement>());
        for (var round = 1; round <= o.Rounds; round++)
            foreach (var shards in o.Shards)
            {
                Measurement? measured = null;
                var ok = await RankProcesses.RunAsync(o.Workers, r => o.ChildArguments(r, shards),
                    line => measured = line.StartsWith("RESULT ", StringComparison.Ordinal) ? Measurement.Parse(line) : measured, TimeSpan.FromMinutes(20));
                if (!ok || measured is null) { Console.Error.WriteLine($"round {round}, shards {shards}: a rank failed"); return 1; }
                Console.Error.WriteLine($"round {round}, {Name(shards)}: {measured.StepMs:F1} ms/step, checksum {measured.Checksum}");
                results[shards].Add(measured);
            }
        Print(o, results);
        return 0;
    }

    private static string Name(int shards) => shards == 0 ? "fast path" : $"reproducible, {shards} shards";

    private static void Print(Options o, Dictionary<int, List<Measurement>> results)
    {
        static double Median(IEnumerable<double> values)
        {
            var v = values.Order().ToArray();
            return v.Length % 2 == 1 ? v[v.Length / 2] : (v[v.Length / 2 - 1] + v[v.Length / 2]) / 2;
        }
        var fast = results.TryGetValue(0, out var f) ? Median(f.Select(m => m.StepMs)) : double.NaN;
        Console.WriteLine("| configuration | step (ms) | vs fast path | data | forward | backward | allreduce | optimizer | allreduce bytes/step | effective busBw (GB/s) | checksums agree |");
        Console.WriteLine("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
        foreach (var (shards, runs) in results)
        {
            var step = Median(runs.Select(m => m.StepMs));
            var phases = Enumerable.Range(0, Phases.Length).Select(i => Median(runs.Select(m => m.PhaseMs[i]))).ToArray();
            var bytes = Median(runs.Select(m => m.AllReduceBytes));
            var busBw = bytes / (phases[3] / 1e3) / 1e9 * 2.0 * (o.Workers - 1) / o.Workers;
            var agree = shards == 0 ? "—" : runs.Select(m => m.Checksum).Distinct().Count() == 1 ? "yes" : "NO";
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {Name(shards)} | {step:F1} | {step / fast:F2}x | {phases[0]:F1} | {phases[1]:F1} | {phases[2]:F1} | {phases[3]:F1} | {phases[4]:F1} | {bytes / 1e6:F2} MB | {busBw:F3} | {agree} |"));
        }
    }

    /// <summary>One rank: trains <c>--steps</c> steps after <c>--warmup</c>, and rank 0 prints what they cost.</summary>
    private static async Task<int> RunRankAsync(int rank, Options o)
    {
        var (listener, peers) = RankProcesses.Join("bench");             // first: the parent reads the port off the first line
        using var owned = listener;
        TorchThreads.Configure(workersOnThisMachine: o.Workers);         // as `pretrain local` gives each worker its cores
        var text = File.ReadAllText(o.Recipe);
        if (o.ChildShards > 0) text = text.TrimEnd() + $"\nreproducible:\n  enabled: true\n  shards: {o.ChildShards}\n";
        var recipe = RecipeLoader.Parse(text, Path.GetFullPath(o.Recipe));
        // TCP, as docs/BENCHMARKS.md says and its earlier figures were: ranks of one host would otherwise share memory.
        await using var ring = new RingCommunicator(listener, 1, rank, peers, RankProcesses.Key, new CollectiveOptions { Transport = TransportPolicy.Tcp });
        await ring.ConnectAsync();
        var run = Directory.CreateTempSubdirectory("pretrain-bench-reproducible-").FullName;
        try
        {
            using var trainer = new Trainer(recipe, rank, o.Workers, ring, run, _ => { });
            var steps = new List<double>();
            double[] phasesAtWarmup = [], bytesAtWarmup = [0];
            var progress = new Inline<StepReport>(report =>
            {
                if (report.Step == o.Warmup) (phasesAtWarmup, bytesAtWarmup[0]) = (PhaseSums(), PretrainMetrics.AllReduceBytesTotal.Value);
                else if (report.Step > o.Warmup) steps.Add(recipe.Batch.Global / report.SamplesPerSecond * 1e3);
            });
            var result = await trainer.RunAsync(o.Warmup + o.Steps, resume: false, progress, CancellationToken.None);
            var phases = PhaseSums().Zip(phasesAtWarmup, (end, start) => (end - start) / o.Steps * 1e3).ToArray();
            var bytes = (PretrainMetrics.AllReduceBytesTotal.Value - bytesAtWarmup[0]) / o.Steps;
            if (rank == 0)
                Console.WriteLine(new Measurement(steps.Order().ElementAt(steps.Count / 2), phases, bytes, result.ReplicaChecksum).ToLine());
            return 0;
        }
        finally
        {
            try { Directory.Delete(run, recursive: true); } catch (IOException) { }
        }
    }

    private static double[] PhaseSums() => [.. Phases.Select(p => PretrainMetrics.StepPhaseSeconds.WithLabels(p).Sum)];

    private sealed class Inline<T>(Action<T> handle) : IProgress<T>
    {
        public void Report(T value) => handle(value);
    }

    private sealed record Measurement(double StepMs, double[] PhaseMs, double AllReduceBytes, string Checksum)
    {
        public string ToLine() => string.Create(CultureInfo.InvariantCulture,
            $"RESULT {StepMs:R} {string.Join(',', PhaseMs.Select(p => p.ToString("R", CultureInfo.InvariantCulture)))} {AllReduceBytes:R} {Checksum}");

        public static Measurement Parse(string line)
        {
            var p = line.Split(' ');
            return new(double.Parse(p[1], CultureInfo.InvariantCulture), [.. p[2].Split(',').Select(v => double.Parse(v, CultureInfo.InvariantCulture))],
                double.Parse(p[3], CultureInfo.InvariantCulture), p[4]);
        }
    }

    private sealed record Options
    {
        public string Recipe { get; private init; } = "recipes/gpt-kjv-demo.yaml";
        public int Workers { get; private init; } = 2;
        public int[] Shards { get; private init; } = [0, 2, 8, 32];
        public int Steps { get; private init; } = 40;
        public int Warmup { get; private init; } = 5;
        public int Rounds { get; private init; } = 2;
        public int? ChildRank { get; private init; }
        public int ChildShards { get; private init; }

        public static Options Parse(string[] args)
        {
            var o = new Options();
            for (var i = 0; i < args.Length; i++)
            {
                string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
                int NextInt() => int.Parse(Next(), CultureInfo.InvariantCulture);
                o = args[i] switch
                {
                    "--recipe" => o with { Recipe = Next() },
                    "--workers" => o with { Workers = NextInt() },
                    "--shards" => o with { Shards = [.. Next().Split(',').Select(s => int.Parse(s, CultureInfo.InvariantCulture))] },
                    "--steps" => o with { Steps = NextInt() },
                    "--warmup" => o with { Warmup = NextInt() },
                    "--rounds" => o with { Rounds = NextInt() },
                    "--child" => o with { ChildRank = NextInt() },
                    "--child-shards" => o with { ChildShards = NextInt() },
                    "--help" or "-h" => throw new ArgumentException("usage: Pretrain.Bench.Reproducible --recipe FILE [--workers 2] [--shards 0,2,8,32] [--steps 40] [--warmup 5] [--rounds 2]"),
                    var s => throw new ArgumentException($"unknown argument {s}; see --help"),
                };
            }
            return o;
        }

        public IEnumerable<string> ChildArguments(int rank, int shards) =>
            ["--child", $"{rank}", "--child-shards", $"{shards}", "--recipe", Path.GetFullPath(Recipe), "--workers", $"{Workers}",
             "--steps", $"{Steps}", "--warmup", $"{Warmup}"];
    }
}
