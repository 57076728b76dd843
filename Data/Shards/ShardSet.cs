namespace Pretrain.Data.Shards;

/// <summary>
/// One split of a prepared folder (index.json and its shards) as a single array of samples addressed by
/// global sample id: shard k holds ids [start_k, start_k + records_k), found by binary search over the
/// cumulative counts. Shards are mapped when first touched and verified once then (checksum of the file,
/// and that it matches the index), so a worker reading a few shards of a large corpus pays only for those.
/// Reading allocates nothing after a shard's first access. Thread-safe.
/// </summary>
public sealed class ShardSet : IDisposable
{
    private readonly string directory;
    private readonly IReadOnlyList<ShardEntry> entries;
    private readonly long[] starts; // starts[k] = first global id of shard k; starts[^1] = Count
    private readonly ShardReader?[] readers;
    private readonly Lock opening = new();

    private ShardSet(string directory, string split, ShardIndex index, ShardSplit shards)
    {
        this.directory = directory;
        Index = index;
        Split = split;
        entries = shards.Shards;
        starts = new long[entries.Count + 1];
        for (var k = 0; k < entries.Count; k++)
            starts[k + 1] = starts[k] + entries[k].Records;
        readers = new ShardReader?[entries.Count];
    }

    public ShardIndex Index { get; }
    public string Split { get; }
    public long Count => starts[^1];

    /// <summary>Opens <paramref name="split"/> ("train", "validation", "test") of the folder <paramref name="directory"/>.</summary>
    public static ShardSet Open(string directory, string split)
    {
        var index = ShardIndex.Load(directory);
        if (!index.Splits.TryGetValue(split, out var shards))
            throw new InvalidDataException(
                $"{Path.Combine(directory, ShardIndex.FileName)}: no split '{split}'; expected one of {string.Join(", ", index.Splits.Keys)}");
        return new ShardSet(directory, split, index, shards);
    }

    /// <summary>Sample <paramref name="sampleId"/> as a span over its shard's mapping.</summary>
    public ReadOnlySpan<T> Record<T>(long sampleId) where T : unmanaged
    {
        var reader = Locate(sampleId, out var local);
        return reader.Record<T>(local);
    }

    /// <summary>The label of sample <paramref name="sampleId"/> (evaluation only).</summary>
    public int Label(long sampleId) => Locate(sampleId, out var local).Label(local);

    /// <summary>The shard holding <paramref name="sampleId"/> and the sample's id within it.</summary>
    public ShardReader Locate(long sampleId, out long localId)
    {
        if ((ulong)sampleId >= (ulong)Count)
            throw new ArgumentOutOfRangeException(nameof(sampleId), sampleId, $"split '{Split}' of {directory} holds samples 0-{Count - 1}");
        var k = Array.BinarySearch(starts, sampleId);
        k = k >= 0 ? k : ~k - 1;
        while (entries[k].Records == 0) // an empty shard shares its start with the next one
            k++;
        localId = sampleId - starts[k];
        return Volatile.Read(ref readers[k]) ?? OpenShard(k);
    }

    private ShardReader OpenShard(int k)
    {
        lock (opening)
        {
            if (readers[k] is { } open)
                return open;
            var entry = entries[k];
            var reader = ShardReader.Open(Path.Combine(directory, entry.File), verify: true);
            if (Mismatch(reader, entry) is { } problem)
            {
                reader.Dispose();
                throw new InvalidDataException($"{reader.Path}: {problem}");
            }
            Volatile.Write(ref readers[k], reader);
            return reader;
        }
    }

    /// <summary>
    /// How the shard differs from its index entry, or null. A different hash means other bytes than were
    /// indexed (corruption, a re-prepared shard); the same hash with another count means the index is wrong.
    /// </summary>
    private static string? Mismatch(ShardReader reader, ShardEntry entry)
    {
        var actual = ShardEntry.FormatChecksum(reader.Checksum);
        var counts = reader.Count == entry.Records ? "" : $"; it also holds {reader.Count} records where the index says {entry.Records}";
        if (actual != entry.Checksum)
            return $"checksum mismatch with {ShardIndex.FileName}: the index says xxHash64 {entry.Checksum}, the shard hashes to {actual}{counts}";
        if (reader.Count != entry.Records)
            return $"record count mismatch with {ShardIndex.FileName}: the index says {entry.Records} records, the shard holds {reader.Count}";
        return null;
    }

    public void Dispose()
    {
        lock (opening)
        {
            for (var k = 0; k < readers.Length; k++)
            {
                readers[k]?.Dispose();
                readers[k] = null;
            }
        }
    }
}
