using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using Pretrain.Data.Preparation;
using Pretrain.Data.Sampling;
using Pretrain.Data.Shards;

// Shard reading against `cat FILES > /dev/null` over the same bytes, and image preparation throughput,
// on the real Fashion-MNIST. Both readers run from a warm page cache (nothing is dropped; the shards were
// just written), so the comparison is memory-mapped access against the kernel's copy-to-user path.
// Usage: Pretrain.Bench.Shards [--input DIR] [--repeats N]      prints a Markdown section on stdout.
var input = "/usr/share/datasets/fashion-mnist";
var repeats = 5;
for (var i = 0; i < args.Length; i++)
    (input, repeats) = args[i] switch
    {
        "--input" => (args[++i], repeats),
        "--repeats" => (input, int.Parse(args[++i], CultureInfo.InvariantCulture)),
        var s => throw new ArgumentException($"unknown argument {s}"),
    };
var output = Path.Combine(Path.GetTempPath(), $"pretrain-bench-shards-{Environment.ProcessId}");
try
{
    // Preparation: all tasks in this process, one after the other (what a coordinator with no workers does).
    var clock = Stopwatch.StartNew();
    var plan = PreparationPlans.Create(new PrepareSpec("fashion-mnist", [input], output));
    var openSeconds = clock.Elapsed.TotalSeconds;
    foreach (var task in plan.Tasks)
        plan.Run(task, null, CancellationToken.None);
    plan.Finish();
    var prepareSeconds = clock.Elapsed.TotalSeconds;
    var inputBytes = plan.Tasks.Sum(t => t.Bytes);
    var gzipBytes = Directory.GetFiles(input).Sum(f => new FileInfo(f).Length);

    var files = Directory.GetFiles(output, "train-*.shard").Order(StringComparer.Ordinal).ToArray();
    var fileBytes = files.Sum(f => new FileInfo(f).Length);
    clock.Restart();
    using var set = ShardSet.Open(output, "train");
    for (var k = 0L; k < set.Count; k += 1000) // first touch of each shard maps and verifies it
        set.Record<byte>(k);
    var verifySeconds = clock.Elapsed.TotalSeconds;
    var sampleBytes = set.Record<byte>(0).Length;

    var ids = new long[set.Count];
    for (var i = 0; i < ids.Length; i++)
        ids[i] = i;
    var shuffled = (long[])ids.Clone();
    for (var i = shuffled.Length - 1; i > 0; i--) // Fisher-Yates from a counter-based generator: same order every run
    {
        var j = SplitMix64.Below(SplitMix64.At(42, (ulong)i), i + 1);
        (shuffled[i], shuffled[j]) = (shuffled[j], shuffled[i]);
    }
    var sequential = Best(repeats, () => Touch(set, ids));
    var random = Best(repeats, () => Touch(set, shuffled));
    // One cat reads the files CatCopies times over (~1 GB), so its ~5-50 ms process start (more under load)
    // is a few percent; the start, timed on /dev/null, is subtracted too.
    const int CatCopies = 20;
    var catAll = Best(repeats, () => Cat([.. Enumerable.Repeat(files, CatCopies).SelectMany(f => f)]));
    var cat = (catAll - Best(repeats, () => Cat(["/dev/null"]))) / CatCopies;

    string Rate(double bytes, double seconds) => (bytes / seconds / 1e6).ToString("F0", CultureInfo.InvariantCulture);
    string Samples(double seconds) => (set.Count / seconds / 1e6).ToString("F2", CultureInfo.InvariantCulture);
    var readBytes = (double)set.Count * sampleBytes;
    Console.WriteLine($"Fashion-MNIST train split: {set.Count} samples of {sampleBytes} bytes (1x28x28 uint8) in {files.Length} shard(s), {fileBytes / 1e6:F1} MB on disk.");
    Console.WriteLine($"Reads touch every byte of every sample (8 bytes at a time); best of {repeats} passes. `cat` reads the shard files whole, 20 times over in one process, less its process start (timed on /dev/null).");
    Console.WriteLine();
    Console.WriteLine("| reader | samples/s | MB/s | vs cat |");
    Console.WriteLine("| --- | --- | --- | --- |");
    Console.WriteLine($"| `cat train-*.shard > /dev/null` | — | {Rate(fileBytes, cat)} | 1.00x |");
    Console.WriteLine($"| ShardSet, sequential ids | {Samples(sequential)} M | {Rate(readBytes, sequential)} | {cat / sequential * readBytes / fileBytes:F2}x |");
    Console.WriteLine($"| ShardSet, random ids (one permutation) | {Samples(random)} M | {Rate(readBytes, random)} | {cat / random * readBytes / fileBytes:F2}x |");
    Console.WriteLine($"| first open: map + xxHash64 verify | — | {Rate(fileBytes, verifySeconds)} | once per shard |");
    Console.WriteLine();
    Console.WriteLine($"Preparation (`fashion-mnist`, 70,000 images, one process): {prepareSeconds:F2} s in all, of which {openSeconds:F2} s " +
        $"decompressing and parsing the idx files; {Rate(inputBytes, prepareSeconds)} MB/s of decoded input pixels " +
        $"({inputBytes / 1e6:F1} MB), {Rate(gzipBytes, prepareSeconds)} MB/s of gzipped input ({gzipBytes / 1e6:F1} MB).");
}
finally
{
    Directory.Delete(output, recursive: true);
}

static double Best(int repeats, Func<ulong> pass)
{
    pass(); // warm-up: JIT, page cache, mappings
    var best = double.MaxValue;
    for (var r = 0; r < repeats; r++)
    {
        var clock = Stopwatch.StartNew();
        GC.KeepAlive(pass());
        best = Math.Min(best, clock.Elapsed.TotalSeconds);
    }
    return best;
}

// XOR of every 8-byte word of every sample: forces each byte to be read, as a collate copy would.
static ulong Touch(ShardSet set, long[] ids)
{
    ulong x = 0;
    foreach (var id in ids)
        foreach (var word in MemoryMarshal.Cast<byte, ulong>(set.Record<byte>(id)))
            x ^= word;
    return x;
}

static ulong Cat(string[] files)
{
    var start = new ProcessStartInfo("bash", ["-c", "cat \"$@\" > /dev/null", "cat", .. files]);
    using var process = Process.Start(start)!;
    process.WaitForExit();
    return (ulong)process.ExitCode;
}
