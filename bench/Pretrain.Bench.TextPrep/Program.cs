using System.Diagnostics;
using Pretrain.Data.Preparation;
using Pretrain.Data.Shards;

// Text preparation throughput: one whole `prepare` of a file (scan, every task one after another on one
// thread, Finish) into a temporary folder, per tokenizer, best of --repeat runs after a warm-up run
// (JIT, the tiktoken ranks, the page cache). Prints one key=value line per tokenizer for bench/textprep.sh.
// Usage: Pretrain.Bench.TextPrep FILE [--repeat N] TOKENIZER...
var input = Path.GetFullPath(args[0]);
var repeat = 3;
var tokenizers = new List<string>();
for (var i = 1; i < args.Length; i++)
{
    if (args[i] == "--repeat")
        repeat = int.Parse(args[++i]);
    else
        tokenizers.Add(args[i]);
}

var bytes = new FileInfo(input).Length;
foreach (var tokenizer in tokenizers)
{
    var best = double.MaxValue;
    long tokens = 0, shardBytes = 0;
    int tasks = 0, compact = 0;
    for (var run = 0; run <= repeat; run++) // run 0 warms up
    {
        var output = Path.Combine(Path.GetTempPath(), $"textprep-{Environment.ProcessId}-{tokenizer}-{run}");
        var spec = new PrepareSpec("text", [input], output, tokenizer, CompactVocabulary: true, ValidationFraction: 0.01);
        var clock = Stopwatch.StartNew();
        var plan = PreparationPlans.Create(spec);
        foreach (var task in plan.Tasks)
            plan.Run(task, null, CancellationToken.None);
        plan.Finish();
        var seconds = clock.Elapsed.TotalSeconds;
        if (run > 0)
            best = Math.Min(best, seconds);
        var index = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllBytes(Path.Combine(output, ShardIndex.FileName)))!;
        tokens = index["splits"]!.AsObject().Sum(s => (long)s.Value!["tokens"]!);
        shardBytes = index["splits"]!.AsObject().Sum(s => s.Value!["shards"]!.AsArray().Sum(e => (long)e!["bytes"]!));
        tasks = plan.Tasks.Count;
        compact = (int)index["tokenizer"]!["compact"]!["vocabularySize"]!;
        Directory.Delete(output, recursive: true);
    }
    Console.WriteLine($"tokenizer={tokenizer} bytes={bytes} tokens={tokens} shard_bytes={shardBytes} tasks={tasks} compact_vocabulary={compact} seconds={best:F3} mb_per_s={bytes / 1e6 / best:F2}");
}
