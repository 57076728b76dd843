using System.Globalization;

namespace Pretrain.Bench.Allreduce;

/// <summary>Command line of the benchmark; the parent passes the same values on to its rank processes.</summary>
internal sealed record BenchOptions
{
    public int[] Ranks { get; private init; } = [2, 4];
    public int Iterations { get; private init; } = 10;
    public int Warmup { get; private init; } = 30;
    public int SegmentKib { get; private init; } = 512;
    /// <summary>SO_SNDBUF/SO_RCVBUF in KiB; 0 keeps Linux autotuning.</summary>
    public int SocketKib { get; private init; }
    /// <summary>1, 16 and 64 MiB: DDP's first bucket, a mid-size bucket, and above DDP's 25 MiB default.</summary>
    public long[] Sizes { get; private init; } = [1 << 20, 16 << 20, 64 << 20];
    public int? ChildRank { get; private init; }
    /// <summary>--tls: the ring over mutual TLS. The parent makes a job CA and a node certificate in a temporary folder
    /// (<see cref="TlsDirectory"/>, passed on to the ranks), as `pretrain certs` does.</summary>
    public bool Tls { get; private init; }
    public string? TlsDirectory { get; init; }
    /// <summary>--transport auto|tcp: auto puts the ranks (all on this host) on shared memory, tcp keeps the TCP ring.</summary>
    public string Transport { get; private init; } = "auto";
    /// <summary>Shared-memory tuning (<see cref="Pretrain.Worker.Collectives.CollectiveOptions"/>): ring size, segment, spin before sleeping.</summary>
    public int ShmRingKib { get; private init; } = 4096;
    public int ShmSegmentKib { get; private init; } = 128;
    public int ShmSpinMicroseconds { get; private init; } = 20;

    public static BenchOptions Parse(string[] args)
    {
        var o = new BenchOptions();
        var sizes = new List<long>();
        for (var i = 0; i < args.Length; i++)
        {
            string Next() => args[++i];
            int NextInt() => int.Parse(Next(), CultureInfo.InvariantCulture);
            o = args[i] switch
            {
                "--ranks" => o with { Ranks = Next().Split(',').Select(s => int.Parse(s, CultureInfo.InvariantCulture)).ToArray() },
                "--iters" => o with { Iterations = NextInt() },
                "--warmup" => o with { Warmup = NextInt() },
                "--segment-kib" => o with { SegmentKib = NextInt() },
                "--socket-kib" => o with { SocketKib = NextInt() },
                "--child" => o with { ChildRank = NextInt() },
                "--tls" => o with { Tls = true },
                "--tls-dir" => o with { Tls = true, TlsDirectory = Next() },
                "--transport" => o with { Transport = Next() switch { "tcp" => "tcp", "auto" => "auto", var t => throw new ArgumentException($"--transport is auto or tcp, not {t}") } },
                "--shm-ring-kib" => o with { ShmRingKib = NextInt() },
                "--shm-segment-kib" => o with { ShmSegmentKib = NextInt() },
                "--shm-spin-us" => o with { ShmSpinMicroseconds = NextInt() },
                var s when long.TryParse(s, CultureInfo.InvariantCulture, out var bytes) => Add(sizes, bytes & ~3L, o),
                var s => throw new ArgumentException($"unknown argument {s}"),
            };
        }
        return sizes.Count > 0 ? o with { Sizes = sizes.ToArray() } : o;
    }

    private static BenchOptions Add(List<long> sizes, long bytes, BenchOptions o)
    {
        sizes.Add(bytes);
        return o;
    }

    public IEnumerable<string> ToChildArgs(int rank, int world) =>
        ["--child", $"{rank}", "--ranks", $"{world}", "--iters", $"{Iterations}", "--warmup", $"{Warmup}",
         "--segment-kib", $"{SegmentKib}", "--socket-kib", $"{SocketKib}", .. TlsDirectory is { } d ? new[] { "--tls-dir", d } : [],
         "--transport", Transport, "--shm-ring-kib", $"{ShmRingKib}", "--shm-segment-kib", $"{ShmSegmentKib}", "--shm-spin-us", $"{ShmSpinMicroseconds}",
         .. Sizes.Select(s => s.ToString(CultureInfo.InvariantCulture))];
}
