using System.Diagnostics;
using System.Globalization;
using Pretrain.Worker.Collectives;

namespace Pretrain.Bench.Allreduce;

/// <summary>
/// Ring allreduce throughput between rank *processes* on loopback, printed in the same format as
/// ../shared/bench/mpi-allreduce (busBw = size / time x 2(n-1)/n, the nccl-tests definition) so
/// bench/allreduce.sh can put both in one table.
/// Usage: Pretrain.Bench.Allreduce [--ranks 2,4] [--iters 10] [--warmup 30] [--segment-kib 512] [--tls] [--transport auto|tcp]
///        [--shm-ring-kib 4096] [--shm-segment-kib 128] [--shm-spin-us 20] [BYTES...]
/// Each line names the transport rank 0's links used (transport=shm|tcp|tls): auto means shared memory between these
/// processes of one host unless --tls.
/// </summary>
public static class Program
{
    public static async Task<int> Main(string[] args)
    {
        var options = BenchOptions.Parse(args);
        if (options.ChildRank is { } rank) return await RunRankAsync(rank, options);
        if (options.Tls && options.TlsDirectory is null)
        {
            var folder = Directory.CreateTempSubdirectory("pretrain-bench-tls-").FullName;
            try
            {
                Pretrain.Shared.Security.JobCertificates.IssueDirectory(folder, "bench", [new("rank", ["localhost", "127.0.0.1"])], TimeSpan.FromDays(1), false);
                return await RunAllAsync(options with { TlsDirectory = folder });
            }
            finally { Directory.Delete(folder, recursive: true); }
        }
        return await RunAllAsync(options);
    }

    private static async Task<int> RunAllAsync(BenchOptions options)
    {
        foreach (var world in options.Ranks)
            if (await RunWorldAsync(world, options) != 0) return 1;
        return 0;
    }

    /// <summary>Parent: starts <paramref name="world"/> rank processes (<see cref="RankProcesses"/>) and prints rank 0's lines.</summary>
    private static async Task<int> RunWorldAsync(int world, BenchOptions options) =>
        await RankProcesses.RunAsync(world, r => options.ToChildArgs(r, world), Console.WriteLine, TimeSpan.FromMinutes(10)) ? 0 : 1;

    /// <summary>Child: one rank. Prints its port, reads every rank's port, then times allreduce per size.</summary>
    private static async Task<int> RunRankAsync(int rank, BenchOptions options)
    {
        var tls = options.TlsDirectory is { } folder
            ? new DataPlaneTlsOptions(Pretrain.Shared.Security.JobCertificates.LoadNode(Path.Combine(folder, "rank.pfx")),
                Pretrain.Shared.Security.JobCertificates.LoadAuthority(Path.Combine(folder, "ca.crt")))
            : null;
        var (listener, peers) = RankProcesses.Join("bench", tls);
        using var owned = listener;
        var collectiveOptions = new CollectiveOptions
        {
            SegmentBytes = options.SegmentKib << 10, SocketBufferBytes = options.SocketKib << 10, Tls = tls,
            Transport = options.Transport == "tcp" ? TransportPolicy.Tcp : TransportPolicy.Auto,
            SharedMemoryRingBytes = options.ShmRingKib << 10, SharedMemorySegmentBytes = options.ShmSegmentKib << 10,
            SharedMemorySpin = TimeSpan.FromMicroseconds(options.ShmSpinMicroseconds),
        };
        await using var ring = new RingCommunicator(listener, 1, rank, peers, RankProcesses.Key, collectiveOptions);
        await ring.ConnectAsync();
        var transport = ring.SendTransport switch { LinkTransport.SharedMemory => "shm", LinkTransport.Tls => "tls", _ => "tcp" };
        // Calls are made as the worker's HostCommunicator makes them: one after another on a thread of their own, which may
        // block for a call (a plain-TCP ring then runs the call's loop right there).
        var thread = new Thread(() =>
        {
            RingCommunicator.RunCallsOnThisThread();
            Measure(ring, rank, peers.Length, options, tls is not null, transport);
        }) { Name = "bench rank " + rank };
        thread.Start();
        thread.Join();
        return 0;
    }

    private static void Measure(RingCommunicator ring, int rank, int n, BenchOptions options, bool tls, string transport)
    {
        var barrier = new float[1];
        foreach (var bytes in options.Sizes)
        {
            var data = new float[bytes / 4];
            Array.Fill(data, rank);
            WarmUp(ring, data, rank, options.Warmup);
            AllReduce(ring, barrier);
            var clock = Stopwatch.StartNew();
            for (var i = 0; i < options.Iterations; i++) AllReduce(ring, data);
            var seconds = clock.Elapsed.TotalSeconds / options.Iterations;
            if (rank == 0)
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"ranks={n} bytes={bytes} time_ms={seconds * 1e3:F3} algbw_GBps={bytes / seconds / 1e9:F3} busbw_GBps={bytes / seconds / 1e9 * 2.0 * (n - 1) / n:F3} tls={(tls ? 1 : 0)} transport={transport}"));
        }
    }

    private static void AllReduce(RingCommunicator ring, float[] data) => ring.AllReduceSumAsync(data).GetAwaiter().GetResult();

    /// <summary>
    /// At least <paramref name="calls"/> calls and at least one second: .NET compiles a method fully only after 30 calls
    /// and a background delay, so a count of calls alone would time the first sizes in unoptimised code (1 MiB came out
    /// 2x slower when measured first than when measured after 64 MiB). Rank 0's clock decides; a one-float allreduce
    /// after each call tells the others, so every rank makes the same calls.
    /// </summary>
    private static void WarmUp(RingCommunicator ring, float[] data, int rank, int calls)
    {
        var clock = Stopwatch.StartNew();
        var more = new float[1];
        for (var i = 0; ; i++)
        {
            AllReduce(ring, data);
            more[0] = rank == 0 && (i + 1 < calls || clock.Elapsed < WarmUpTime) ? 1 : 0;
            AllReduce(ring, more);
            if (more[0] == 0) return;
        }
    }

    private static readonly TimeSpan WarmUpTime = TimeSpan.FromSeconds(1);
}
