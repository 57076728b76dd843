using Pretrain.Data.Sampling;

namespace Pretrain.Worker.Training.Reproducible;

/// <summary>
/// Which micro-shards of a global batch a rank computes. Shard j of a step is the global batch's samples
/// [j·b, (j+1)·b) (b = global / shards), the same samples whatever the world size; rank r of W takes the
/// consecutive shards <see cref="GlobalBatchSampler.Share"/>(shards, W, r), so ranks differ by at most one
/// shard. What a shard computes depends on its samples alone, never on which rank holds it.
/// </summary>
public readonly record struct ShardPlan(int Shards, int ShardSize, int First, int Count)
{
    /// <param name="globalBatch">Samples per step; <paramref name="shards"/> divides it (the recipe checks).</param>
    public static ShardPlan For(int globalBatch, int shards, int worldSize, int rank)
    {
        if (worldSize > shards)
            throw new ArgumentOutOfRangeException(nameof(worldSize), worldSize, $"{shards} micro-shards cannot give each of {worldSize} ranks one");
        var (first, count) = GlobalBatchSampler.Share(shards, worldSize, rank);
        return new ShardPlan(shards, globalBatch / shards, (int)first, count);
    }

    /// <summary>The most shards any rank holds in this world: what a collective pads every rank's share to.</summary>
    public static int MostPerRank(int shards, int worldSize) => (shards + worldSize - 1) / worldSize;

    /// <summary>Samples of the step over all ranks.</summary>
    public int GlobalCount => Shards * ShardSize;

    /// <summary>
    /// Row indices, in shard order, into an all-gather of every rank's local shards (each rank's padded to
    /// <see cref="MostPerRank"/> shards of <paramref name="rowsPerShard"/> rows): shard s's rows come s-th,
    /// whichever rank computed them. What <c>index_select</c> takes to put a gather in shard order.
    /// </summary>
    public static long[] GatheredRows(int shards, int worldSize, long rowsPerShard)
    {
        int most = MostPerRank(shards, worldSize);
        var rows = new long[shards * rowsPerShard];
        foreach (var (rank, local, shard) in Layout(shards, worldSize))
            for (var t = 0L; t < rowsPerShard; t++) rows[shard * rowsPerShard + t] = (rank * most + local) * rowsPerShard + t;
        return rows;
    }

    /// <summary>
    /// Adds into <paramref name="total"/>, element by element, every shard's <paramref name="width"/> values of such an
    /// all-gather, in shard order and in double: the same bits whatever the world size, as a reproducible run needs.
    /// </summary>
    public static void SumInShardOrder(ReadOnlySpan<float> gathered, int shards, int worldSize, int width, Span<double> total)
    {
        int most = MostPerRank(shards, worldSize);
        var slots = new int[shards];                                  // shard → its slot in the gather
        foreach (var (rank, local, shard) in Layout(shards, worldSize)) slots[shard] = rank * most + local;
        foreach (var slot in slots)
        {
            var values = gathered.Slice(slot * width, width);
            for (var k = 0; k < values.Length; k++) total[k] += values[k];
        }
    }

    /// <summary>The global shard index of each rank's local shards, for a world of <paramref name="worldSize"/>: [rank][i] → shard.</summary>
    public static IEnumerable<(int Rank, int Local, int Shard)> Layout(int shards, int worldSize)
    {
        for (var r = 0; r < worldSize; r++)
        {
            var (first, count) = GlobalBatchSampler.Share(shards, worldSize, r);
            for (var i = 0; i < count; i++)
                yield return (r, i, (int)first + i);
        }
    }
}
