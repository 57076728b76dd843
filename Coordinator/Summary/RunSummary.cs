using System.Text.Json;
using System.Text.Json.Serialization;
using Pretrain.Coordinator.State;

namespace Pretrain.Coordinator.Summary;

/// <summary>
/// summary.json, the run directory's account of a finished job (brief, user-facing contract): method,
/// world size, steps, final loss, throughput, every replica's parameter checksum, evaluation.
/// </summary>
public sealed record RunSummary
{
    public required string Status { get; init; }              // "completed", "failed" or "interrupted"
    public string? Error { get; init; }
    public required string Method { get; init; }
    public required int WorldSize { get; init; }
    public required long Steps { get; init; }
    public required double FinalLoss { get; init; }
    /// <summary>Global loss of the first step this run executed (after a resume: the first step after it).</summary>
    public double FirstLoss { get; init; } = double.NaN;
    public required double SamplesPerSecond { get; init; }
    /// <summary>Model FLOPs utilization against the matmul peak measured on the workers' machine (GPT).</summary>
    public double Mfu { get; init; }
    /// <summary>Rank → xxHash64 of that replica's parameters; all equal when data parallelism is sound.</summary>
    public required IReadOnlyDictionary<string, string> ReplicaChecksums { get; init; }
    public required IReadOnlyDictionary<string, double> Eval { get; init; }
    public required long Generation { get; init; }
    /// <summary>Every rendezvous generation: number, world size, first step, cause (start, lost, left, joined).</summary>
    public IReadOnlyList<GenerationRecord> Generations { get; init; } = [];
    /// <summary>Regroups after a worker was lost or left (a newcomer's admission is not a recovery).</summary>
    public int Recoveries { get; init; }
    /// <summary>The longest time from a failure's detection to the first step committed after it.</summary>
    public double MaxRecoverySeconds { get; init; }
    /// <summary>Chained xxHash64 of the sample ids of every committed step in step order: equal for runs that trained on the same samples.</summary>
    public string? SampleDigest { get; init; }
    public string? RecipeHash { get; init; }
    /// <summary>Absolute path of the recipe file the run started from (its relative data paths resolve against it).</summary>
    public string? Recipe { get; init; }
    public string? LastCheckpoint { get; init; }
    public required double WallSeconds { get; init; }
    /// <summary>
    /// Whether the recipe asked for a reproducible run (<c>reproducible.enabled</c>), its micro-shards, and then
    /// the run's fingerprint: the replica checksum, a function of (recipe, seed, steps) alone — the same on any
    /// world size and through any failure. Null on a summary written before the recipe was known.
    /// </summary>
    public ReproducibleSummary? Reproducible { get; init; }

    static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,   // a NaN loss is still reported
    };

    /// <param name="shards">The recipe's <c>reproducible.shards</c> when reproducible runs are on; null otherwise.</param>
    public static RunSummary From(JobOutcome outcome, string method, TimeSpan wall, int? shards = null)
    {
        var ranks = outcome.Ranks.OrderBy(r => r.Rank).ToList();
        var rank0 = ranks.FirstOrDefault();
        var checksums = ranks.Select(r => r.ReplicaChecksum).Distinct().ToList();
        return new RunSummary
        {
            Status = outcome.Succeeded ? "completed" : "failed",
            Error = outcome.FailureReason,
            Method = method,
            WorldSize = outcome.WorldSize > 0 ? outcome.WorldSize : outcome.Job?.WorldSize ?? ranks.Count,
            Steps = rank0?.Step ?? outcome.Steps,
            FinalLoss = rank0?.FinalLoss ?? double.NaN,
            FirstLoss = rank0?.FirstLoss ?? double.NaN,
            SamplesPerSecond = rank0?.SamplesPerSecond ?? 0,
            Mfu = rank0?.Mfu ?? 0,
            ReplicaChecksums = ranks.ToDictionary(r => r.Rank.ToString(), r => r.ReplicaChecksum),
            Eval = rank0?.Eval ?? new Dictionary<string, double>(),
            Generation = outcome.Generation,
            Generations = outcome.Generations,
            Recoveries = outcome.Recoveries.Count,
            MaxRecoverySeconds = outcome.Recoveries.Count > 0 ? Math.Round(outcome.Recoveries.Max(), 3) : 0,
            SampleDigest = string.IsNullOrEmpty(rank0?.SampleDigest) ? null : rank0.SampleDigest,
            RecipeHash = outcome.Job?.RecipeHash,
            LastCheckpoint = outcome.Checkpoints.Count > 0 ? outcome.Checkpoints[^1].Path : null,
            WallSeconds = Math.Round(wall.TotalSeconds, 2),
            Reproducible = shards is { } n
                ? new ReproducibleSummary(true, n, outcome.Succeeded && checksums.Count == 1 ? checksums[0] : null)
                : new ReproducibleSummary(false),
        };
    }

    /// <summary>A run stopped before the job ended (by a signal, or a coordinator that had no worker for --idle-timeout).</summary>
    public static RunSummary Interrupted(string method, int worldSize, TimeSpan wall, string? why = null, long steps = 0, long generation = 0) => new()
    {
        Status = "interrupted",
        Error = why ?? "stopped by a signal before the job ended",
        Method = method,
        WorldSize = worldSize,
        Steps = steps,
        FinalLoss = double.NaN,
        SamplesPerSecond = 0,
        ReplicaChecksums = new Dictionary<string, string>(),
        Eval = new Dictionary<string, double>(),
        Generation = generation,
        WallSeconds = Math.Round(wall.TotalSeconds, 2),
    };

    /// <summary>summary.json's text.</summary>
    public string ToJson() => JsonSerializer.Serialize(this, Json);

    /// <summary>Writes summary.json atomically (temporary file, then rename) and returns its path.</summary>
    public async Task<string> WriteAsync(string runDirectory, CancellationToken ct = default)
    {
        string path = Path.Combine(runDirectory, "summary.json");
        string temporary = path + ".tmp";
        await File.WriteAllTextAsync(temporary, JsonSerializer.Serialize(this, Json), ct);
        File.Move(temporary, path, overwrite: true);
        return path;
    }

    public static RunSummary Read(string path) =>
        JsonSerializer.Deserialize<RunSummary>(File.ReadAllText(path), Json)
        ?? throw new InvalidDataException(path + " is empty");
}

/// <summary>summary.json's <c>reproducible</c>: on or off, the micro-shards, and the fingerprint of a completed run whose replicas agree.</summary>
public sealed record ReproducibleSummary(bool Enabled, int? Shards = null, string? Fingerprint = null);
