using System.Buffers.Binary;
using System.IO.Hashing;
using Pretrain.Worker.Collectives;
using static TorchSharp.torch;

namespace Pretrain.Worker.Training;

/// <summary>The scalar part of a replica: what travels in the header of a state broadcast.</summary>
public readonly record struct ReplicaHeader(long Step, long OptimizerStep, double Loss, ulong SampleDigest, ulong Checksum, long Bytes)
{
    public const int Size = 64;
    private const uint Magic = 0x53525450; // "PTRS"
    private const uint Version = 1;

    public void Write(Span<byte> b)
    {
        b.Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(b, Magic);
        BinaryPrimitives.WriteUInt32LittleEndian(b[4..], Version);
        BinaryPrimitives.WriteInt64LittleEndian(b[8..], Step);
        BinaryPrimitives.WriteInt64LittleEndian(b[16..], OptimizerStep);
        BinaryPrimitives.WriteDoubleLittleEndian(b[24..], Loss);
        BinaryPrimitives.WriteUInt64LittleEndian(b[32..], SampleDigest);
        BinaryPrimitives.WriteUInt64LittleEndian(b[40..], Checksum);
        BinaryPrimitives.WriteInt64LittleEndian(b[48..], Bytes);
    }

    public static ReplicaHeader Read(ReadOnlySpan<byte> b, int source)
    {
        if (BinaryPrimitives.ReadUInt32LittleEndian(b) != Magic || BinaryPrimitives.ReadUInt32LittleEndian(b[4..]) != Version)
            throw new InvalidDataException($"the state broadcast from rank {source} does not start with a version {Version} replica header");
        return new ReplicaHeader(BinaryPrimitives.ReadInt64LittleEndian(b[8..]), BinaryPrimitives.ReadInt64LittleEndian(b[16..]),
            BinaryPrimitives.ReadDoubleLittleEndian(b[24..]), BinaryPrimitives.ReadUInt64LittleEndian(b[32..]),
            BinaryPrimitives.ReadUInt64LittleEndian(b[40..]), BinaryPrimitives.ReadInt64LittleEndian(b[48..]));
    }
}

/// <summary>
/// State by broadcast (brief, principle 5): at the start of every generation each member adopts the
/// replica of the generation's source rank — everything <c>--resume</c> would read from disk, straight
/// from memory over the data plane, never through Akka messages or the disk. The source's header goes
/// first; one all-reduced flag tells whether any member differs (a newcomer, a survivor a step behind).
/// Only then do the tensors follow, in chunks (one collective moves at most <see cref="ChunkBytes"/>, far
/// below the 2 GiB a TorchSharp span can address), and every receiver checks its checksum against the
/// source's, failing loudly if they differ.
/// </summary>
public static class ReplicaSync
{
    public const int ChunkBytes = 64 << 20; // large enough to keep the pipelined ring at full speed, small enough to bound a retry

    /// <summary>xxHash64 over every tensor's bytes, in the given order.</summary>
    public static ulong Checksum(IEnumerable<Tensor> tensors)
    {
        var hash = new XxHash64();
        foreach (var t in tensors)
            hash.Append(t.bytes);
        return hash.GetCurrentHashAsUInt64();
    }

    /// <summary>
    /// Makes <paramref name="tensors"/> and the header equal to rank <paramref name="source"/>'s on every
    /// member. <paramref name="mine"/> is this rank's header (its checksum over <paramref name="tensors"/>);
    /// <paramref name="valid"/> false means this rank holds nothing to keep (a newcomer). Returns the adopted
    /// header and whether tensors crossed the network. <paramref name="receiving"/> is called before this
    /// rank's tensors start to be overwritten.
    /// </summary>
    public static async Task<(ReplicaHeader Header, bool Transferred)> AdoptAsync(ICommunicator group, int source, ReplicaHeader mine, bool valid,
        IReadOnlyList<Tensor> tensors, Action receiving, CancellationToken ct, int chunkBytes = ChunkBytes)
    {
        if (group.WorldSize == 1) return (mine, false);
        var header = new byte[ReplicaHeader.Size];
        if (group.Rank == source) mine.Write(header);
        using (var wire = tensor(header))
        {
            await group.Broadcast(wire, source, ct);
            wire.bytes.CopyTo(header);
        }
        var theirs = ReplicaHeader.Read(header, source);
        if (theirs.Bytes != mine.Bytes)
            throw new InvalidDataException($"the replica of rank {source} holds {theirs.Bytes} bytes of state, this one {mine.Bytes}: the workers do not run the same recipe or build");
        using var differs = tensor(new float[] { group.Rank != source && (!valid || theirs != mine) ? 1 : 0 });
        await group.AllReduceSum(differs, ct);
        if (differs.item<float>() == 0) return (theirs, false);

        if (group.Rank != source) receiving();
        foreach (var t in tensors)
        {
            using var flat = t.view(-1);                                  // contiguous: a view of the same storage
            var perChunk = Math.Max(1, chunkBytes / (int)flat.ElementSize);
            for (long offset = 0; offset < flat.numel(); offset += perChunk)
            {
                using var chunk = flat.narrow(0, offset, Math.Min(perChunk, flat.numel() - offset));
                await group.Broadcast(chunk, source, ct);
            }
        }
        var checksum = Checksum(tensors);
        if (checksum != theirs.Checksum)
            throw new InvalidDataException($"state broadcast from rank {source}: this replica's checksum {checksum:x16} differs from the source's {theirs.Checksum:x16} after the transfer");
        return (theirs, true);
    }
}
