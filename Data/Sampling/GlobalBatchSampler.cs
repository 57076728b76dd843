namespace Pretrain.Data.Sampling;

/// <summary>
/// Which samples each step and rank train on (brief, principle 4). The order of an epoch is a
/// permutation of [0, samples) that is a pure function of (seed, epoch): Fisher–Yates driven by
/// SplitMix64. Epochs are concatenated into one endless order; step <c>s</c> consumes the fixed slice
/// [s·B, (s+1)·B) of it as the global batch (crossing an epoch boundary when it has to), and rank
/// <c>r</c> of <c>W</c> takes the contiguous part [r·B/W, (r+1)·B/W). The global batch therefore does not
/// depend on W, and the resume state is the step alone.
/// </summary>
public sealed class GlobalBatchSampler
{
    private readonly ulong _seed;
    private int[] _order = [];   // permutation of the cached epoch; rebuilt once per epoch (4 bytes per sample)
    private long _orderEpoch = -1;

    public long Samples { get; }
    public int GlobalBatch { get; }

    public GlobalBatchSampler(long seed, long samples, int globalBatch)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(samples, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(samples, int.MaxValue);
        ArgumentOutOfRangeException.ThrowIfLessThan(globalBatch, 1);
        _seed = (ulong)seed;
        Samples = samples;
        GlobalBatch = globalBatch;
    }

    /// <summary>The epoch that the first sample of <paramref name="step"/> belongs to.</summary>
    public long EpochOf(long step) => step * GlobalBatch / Samples;

    /// <summary>
    /// Where <paramref name="step"/> starts, as MosaicML Streaming states resume positions:
    /// (epoch, sample_in_epoch). A pure function of (step, samples, global batch).
    /// </summary>
    public SamplePosition PositionOf(long step)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(step);
        var position = step * GlobalBatch;
        return new SamplePosition(position / Samples, position % Samples);
    }

    /// <summary>
    /// The step that starts at <paramref name="position"/>; the inverse of <see cref="PositionOf"/>.
    /// Refuses a position that falls inside a global batch, since no step starts there.
    /// </summary>
    public long StepOf(SamplePosition position)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(position.Epoch);
        ArgumentOutOfRangeException.ThrowIfNegative(position.SampleInEpoch);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(position.SampleInEpoch, Samples);
        var absolute = position.Epoch * Samples + position.SampleInEpoch;
        if (absolute % GlobalBatch != 0)
            throw new ArgumentException(
                $"position (epoch {position.Epoch}, sample {position.SampleInEpoch}) is not the start of a step of global batch {GlobalBatch}");
        return absolute / GlobalBatch;
    }

    /// <summary>Fills <paramref name="ids"/> (length B/W) with rank <paramref name="rank"/>'s part of step <paramref name="step"/>'s global batch.</summary>
    public void RankBatch(long step, int rank, int worldSize, Span<long> ids)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(step);
        if (worldSize < 1 || GlobalBatch % worldSize != 0)
            throw new ArgumentException($"global batch {GlobalBatch} is not divisible by world size {worldSize}");
        ArgumentOutOfRangeException.ThrowIfNegative(rank);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(rank, worldSize);
        var perRank = GlobalBatch / worldSize;
        if (ids.Length != perRank)
            throw new ArgumentException($"expected room for {perRank} sample ids, got {ids.Length}");
        var first = step * GlobalBatch + (long)rank * perRank;
        for (var i = 0; i < perRank; i++)
            ids[i] = At(first + i);
    }

    /// <summary>
    /// Part <paramref name="index"/> of <paramref name="total"/> items cut into <paramref name="parts"/>
    /// contiguous parts whose sizes differ by at most one: [⌊i·total/parts⌋, ⌊(i+1)·total/parts⌋).
    /// </summary>
    public static (long Start, int Count) Share(long total, int parts, int index)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(parts, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(index, parts);
        long start = total * index / parts, end = total * (index + 1) / parts;
        return (start, (int)(end - start));
    }

    /// <summary>
    /// Rank <paramref name="rank"/>'s samples of micro-step <paramref name="microStep"/> of
    /// <paramref name="step"/>, written to the start of <paramref name="ids"/>; returns how many. The global
    /// batch is cut into <paramref name="microSteps"/> micro-batches first and each of those over the ranks
    /// (<see cref="Share"/>), so a micro-batch's samples over all ranks — what SimCLR's negatives and
    /// MoCo's shuffle see — are the same whatever the world size, which need not divide the batch.
    /// </summary>
    public int MicroBatch(long step, int microStep, int microSteps, int rank, int worldSize, Span<long> ids)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(step);
        if (microSteps < 1 || GlobalBatch % microSteps != 0)
            throw new ArgumentException($"global batch {GlobalBatch} is not divisible into {microSteps} micro-steps");
        ArgumentOutOfRangeException.ThrowIfNegative(microStep);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(microStep, microSteps);
        var micro = GlobalBatch / microSteps;
        var (start, count) = Share(micro, worldSize, rank);
        if (ids.Length < count)
            throw new ArgumentException($"expected room for {count} sample ids, got {ids.Length}");
        var first = step * GlobalBatch + (long)microStep * micro + start;
        for (var i = 0; i < count; i++)
            ids[i] = At(first + i);
        return count;
    }

    /// <summary>The whole global batch of <paramref name="step"/> (rank 0 of world size 1).</summary>
    public void GlobalBatchOf(long step, Span<long> ids) => RankBatch(step, 0, 1, ids);

    /// <summary>Sample at <paramref name="position"/> of the epoch-concatenated order.</summary>
    public long At(long position)
    {
        var epoch = position / Samples;
        if (epoch != _orderEpoch)
        {
            _order = Permutation(_seed, epoch, (int)Samples);
            _orderEpoch = epoch;
        }
        return _order[position % Samples];
    }

    /// <summary>The order of epoch <paramref name="epoch"/>: a pure function of (seed, epoch).</summary>
    public static int[] Permutation(ulong seed, long epoch, int samples)
    {
        var order = new int[samples];
        for (var i = 0; i < samples; i++)
            order[i] = i;
        var epochSeed = SplitMix64.Combine(seed, (ulong)epoch);
        for (var i = samples - 1; i > 0; i--)
        {
            var j = (int)SplitMix64.Below(SplitMix64.At(epochSeed, (ulong)i), i + 1);
            (order[i], order[j]) = (order[j], order[i]);
        }
        return order;
    }
}
