using System.IO.Hashing;
using System.Runtime.InteropServices;

namespace Pretrain.Data.Shards;

/// <summary>
/// Streams records into one shard file. Records go straight to disk (a 1 MiB buffer) while the checksum
/// is computed over the same bytes; only the record index (8 bytes a record) and labels (4 bytes) stay in
/// memory until <see cref="Complete"/>. The file is written under a temporary name and renamed into place
/// once complete and fsynced; disposing a writer that was not completed deletes the temporary file, so
/// the final name never holds a partial shard.
/// </summary>
public sealed class ShardWriter : IDisposable
{
    private const int BufferBytes = 1 << 20;
    private readonly string path;
    private readonly string temporary;
    private readonly ShardLayout layout;
    private readonly long recordBytes; // 0 for variable-length records
    private readonly FileStream stream;
    private readonly XxHash64 hash = new();
    private readonly List<long> offsets = [0]; // element offset of each record's start, then the end
    private readonly List<int> labels = [];
    private long dataBytes;
    private bool completed;

    public ShardWriter(string path, ShardLayout layout)
    {
        if (!BitConverter.IsLittleEndian)
            throw new PlatformNotSupportedException("shards are little-endian; this machine is not");
        if (layout.Shape.Count > ShardFormat.MaxRank || layout.Shape.Any(d => d <= 0))
            throw new ArgumentException($"shard shape must have 0-{ShardFormat.MaxRank} positive dimensions: [{string.Join(", ", layout.Shape)}]");
        this.path = path;
        this.layout = layout;
        recordBytes = layout.RecordElements * layout.ElementBytes;
        temporary = AtomicFile.StartTemporary(path);
        stream = new FileStream(temporary, FileMode.Create, FileAccess.ReadWrite, FileShare.None, BufferBytes);
        stream.Write(new byte[ShardFormat.HeaderBytes]); // placeholder: the header is written last
    }

    public long RecordCount => offsets.Count - 1;

    /// <summary>Appends one record; <paramref name="label"/> is required exactly when the layout has labels.</summary>
    public void Append<T>(ReadOnlySpan<T> record, int? label = null) where T : unmanaged
    {
        if (Marshal.SizeOf<T>() != layout.ElementBytes)
            throw new ArgumentException($"{typeof(T).Name} does not match the shard's dtype {ShardFormat.DTypeName(layout.DType)}");
        var bytes = MemoryMarshal.AsBytes(record);
        if (recordBytes != 0 && bytes.Length != recordBytes)
            throw new ArgumentException($"record of {bytes.Length} bytes; this shard's records are {recordBytes} bytes");
        if (label.HasValue != layout.HasLabels)
            throw new ArgumentException(layout.HasLabels ? "this shard stores a label per record" : "this shard stores no labels");
        WriteBody(bytes);
        dataBytes += bytes.Length;
        offsets.Add(offsets[^1] + record.Length);
        if (label is { } l)
            labels.Add(l);
    }

    /// <summary>Writes the index, labels and header, fsyncs, and renames the file into place.</summary>
    public ShardEntry Complete()
    {
        ObjectDisposedException.ThrowIf(completed, this);
        var count = RecordCount;
        var end = ShardFormat.HeaderBytes + dataBytes;
        long indexOffset = 0, labelsOffset = 0;
        if (recordBytes == 0)
        {
            end = Pad(end, 8);
            indexOffset = end;
            WriteBody(MemoryMarshal.AsBytes(CollectionsMarshal.AsSpan(offsets)));
            end += offsets.Count * 8L;
        }
        if (layout.HasLabels)
        {
            end = Pad(end, 8);
            labelsOffset = end;
            WriteBody(MemoryMarshal.AsBytes(CollectionsMarshal.AsSpan(labels)));
            end += labels.Count * 4L;
        }
        var header = new byte[ShardFormat.HeaderBytes];
        var fields = new ShardHeader(layout, count, indexOffset, labelsOffset, ShardFormat.HeaderBytes, dataBytes, end, 0);
        ShardFormat.Write(header, fields);
        hash.Append(header.AsSpan(ShardFormat.HashedHeaderStart));
        var checksum = hash.GetCurrentHashAsUInt64();
        ShardFormat.Write(header, fields with { Checksum = checksum });
        stream.Position = 0;
        stream.Write(header);
        stream.Flush(flushToDisk: true); // durable data before the rename that publishes it
        stream.Dispose();
        AtomicFile.Publish(temporary, path);
        completed = true;
        return new ShardEntry(Path.GetFileName(path), count, end, ShardEntry.FormatChecksum(checksum));
    }

    public void Dispose()
    {
        if (completed)
            return;
        stream.Dispose();
        File.Delete(temporary); // an abandoned shard leaves nothing behind
        completed = true;
    }

    private void WriteBody(ReadOnlySpan<byte> bytes)
    {
        stream.Write(bytes);
        hash.Append(bytes);
    }

    // Zero bytes up to the next multiple of alignment, so the int64 index and int32 labels read aligned.
    private long Pad(long position, int alignment)
    {
        var padding = (int)((alignment - position % alignment) % alignment);
        Span<byte> zeros = stackalloc byte[8];
        zeros.Clear();
        WriteBody(zeros[..padding]);
        return position + padding;
    }
}
