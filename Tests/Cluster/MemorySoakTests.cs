using System.Text.RegularExpressions;
using Pretrain.Tests.Infrastructure;
using Xunit;

namespace Pretrain.Tests.Cluster;

/// <summary>
/// Brief, principle 6: memory stays flat over 10,000 steps (every tensor disposed, no per-step garbage
/// that grows). Long: runs only with ./test.sh --long (about 4 minutes on 2 cores).
/// </summary>
[Trait("Category", "Long")]
public sealed class MemorySoakTests(Xunit.Abstractions.ITestOutputHelper output) : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("pretrain-soak-").FullName;

    [Fact]
    public async Task Worker_memory_stays_flat_over_10000_steps()
    {
        string recipe = LongRecipe.Write(_dir);
        File.WriteAllText(recipe, Regex.Replace(File.ReadAllText(recipe), @"(?m)^steps: \d+", "steps: 10000"));
        using var cli = CliProcess.Start("local", "--recipe", recipe, "--workers", "2", "--run-dir", Path.Combine(_dir, "run"),
            "--metrics-port", "-1", "--worker-metrics-port", "-1");
        await cli.WaitForOutputAsync(o => LongRecipe.LastStep(o) >= 1000, TimeSpan.FromMinutes(5));   // warmed up
        int pid = LongRecipe.WorkerPid(cli.Output, "worker-0");
        long baseline = ResidentKilobytes(pid), peak = baseline;
        var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(15);
        while (LongRecipe.LastStep(cli.Output) < 9500 && !cli.HasExited)
        {
            Assert.True(DateTime.UtcNow < deadline, $"the run did not reach step 9500 within 15 min of step 1000 (at step {LongRecipe.LastStep(cli.Output)})");
            await Task.Delay(2000);   // a sample of the resident memory every 2 s
            if (File.Exists($"/proc/{pid}/status")) peak = Math.Max(peak, ResidentKilobytes(pid));
        }
        Assert.Equal(0, await cli.WaitAsync(TimeSpan.FromMinutes(10)));
        output.WriteLine($"worker-0 resident memory: {baseline / 1024} MiB at step 1000, peak {peak / 1024} MiB up to step 9500");
        // 64 MiB of slack for the allocator and the GC's heap sizing: any leak of 8 KB or more per step
        // (the tiny model's smallest weight matrix is 16 KB) exceeds it over 8,500 steps.
        Assert.True(peak - baseline < 64 * 1024, $"resident memory grew from {baseline / 1024} MiB to {peak / 1024} MiB");
    }

    static long ResidentKilobytes(int pid) =>
        long.Parse(Regex.Match(File.ReadAllText($"/proc/{pid}/status"), @"VmRSS:\s+(\d+) kB").Groups[1].Value);

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }
}
