using System.Buffers.Binary;
using System.IO.MemoryMappedFiles;
using System.Security.Cryptography;
using Microsoft.Win32.SafeHandles;

namespace Pretrain.Worker.Collectives;

/// <summary>
/// A single-producer single-consumer byte ring in a file on a tmpfs (/dev/shm) that two processes of one host map:
/// the sending rank writes (<see cref="SharedMemorySender"/>), the receiving rank reads (<see cref="SharedMemoryReceiver"/>).
/// One 4 KiB header page, then the data, a power of two long. Every counter has a 128-byte line of its own (x86 fetches
/// lines in pairs), so the producer's and the consumer's writes never share one:
/// <code>
///    0  magic (8) | capacity (8) | token (16)     written by the creator before the other side maps it
///  128  head: bytes ever written                 (producer only)
///  256  tail: bytes ever read                    (consumer only)
///  384  consumer waits for this many readable bytes, 0 = not waiting   (set by the consumer, taken by the producer)
///  512  producer waits for this many free bytes, 0 = not waiting       (set by the producer, taken by the consumer)
/// 4096  data
/// </code>
/// Each side publishes its counter with a release store after moving the bytes, so the other side's acquire load of it
/// sees them. A side that finds nothing to do announces what it waits for and then looks once more; the other side
/// publishes, then looks at the announcement; both with a full fence between, so at least one of them sees the other
/// (no lost wake-up). Who takes an announcement (an atomic compare-exchange) rings the waiter's doorbell.
/// Counters read from the mapping are checked against the capacity: a peer that scribbles on the header fails the link
/// instead of making us copy out of bounds.
/// Every access holds a reference on the mapping, so disposing the ring while a loop still copies defers the unmap to
/// the end of that copy (a dead communicator fails its loops; it never crashes the process).
/// </summary>
internal sealed unsafe class SharedRing : IDisposable
{
    public const int HeaderBytes = 4096;
    public const int MinCapacity = 64 << 10;
    public const int MaxCapacity = 1 << 30;
    public const int TokenSize = 16;
    private const ulong Magic = 0x31474E4952544450;   // "PDTRING1"
    private const int HeadOffset = 128, TailOffset = 256, ConsumerWaitsOffset = 384, ProducerWaitsOffset = 512;

    /// <summary>
    /// At most this much moves before the counter is published: the other side starts on the first 64 KiB while the
    /// rest is copied (a 512 KiB segment copied whole would keep the consumer idle for its length).
    /// </summary>
    public const int PublishBytes = 64 << 10;

    private readonly MemoryMappedFile _file;
    private readonly MemoryMappedViewAccessor _view;
    private readonly SafeMemoryMappedViewHandle _handle;
    private readonly byte* _base, _data;
    private readonly int _capacity;
    private readonly long _mask;
    private long _head;   // the producer's own copy of head (it alone writes it)
    private long _tail;   // the consumer's own copy of tail
    private int _disposed;

    private SharedRing(string path, MemoryMappedFile file, MemoryMappedViewAccessor view, byte* pointer, int capacity)
    {
        (Path, _file, _view, _handle, _capacity) = (path, file, view, view.SafeMemoryMappedViewHandle, capacity);
        _base = pointer;                  // pointers cannot be tuple elements
        _data = pointer + HeaderBytes;
        _mask = capacity - 1;
        _head = Volatile.Read(ref Head);
        _tail = Volatile.Read(ref Tail);
    }

    /// <summary>The ring's file (unlinked once both sides mapped it; the memory lives as long as a mapping does).</summary>
    public string Path { get; }
    public int Capacity => _capacity;

    public static bool IsValidCapacity(long capacity) => capacity is >= MinCapacity and <= MaxCapacity && (capacity & (capacity - 1)) == 0;

    /// <summary>
    /// Creates <paramref name="path"/> (it must not exist; owner read-write only), fills it with zeros — so a tmpfs without
    /// room fails here with an IOException, not later with SIGBUS on a page of the mapping — maps it and writes the header.
    /// </summary>
    public static SharedRing Create(string path, int capacity, ReadOnlySpan<byte> token)
    {
        if (!IsValidCapacity(capacity)) throw new ArgumentOutOfRangeException(nameof(capacity), capacity, $"a power of two from {MinCapacity} to {MaxCapacity}");
        if (token.Length != TokenSize) throw new ArgumentException($"a token of {TokenSize} bytes", nameof(token));
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.ReadWrite, Share = FileShare.ReadWrite, BufferSize = 0 };
        if (!OperatingSystem.IsWindows()) options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        long length = HeaderBytes + (long)capacity;
        var stream = new FileStream(path, options);
        try
        {
            var zeros = new byte[64 << 10];
            for (long at = 0; at < length; at += zeros.Length) stream.Write(zeros, 0, (int)Math.Min(zeros.Length, length - at));
            var ring = Map(path, stream, capacity);   // cannot fail past this point: the header is ours to write
            var header = new Span<byte>(ring._base, 32);
            BinaryPrimitives.WriteUInt64LittleEndian(header, Magic);
            BinaryPrimitives.WriteInt64LittleEndian(header[8..], capacity);
            token.CopyTo(header[16..]);
            return ring;
        }
        catch
        {
            stream.Dispose();
            try { File.Delete(path); } catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
            throw;
        }
    }

    /// <summary>Maps the ring another process created at <paramref name="path"/>; <see cref="InvalidDataException"/> unless its size,
    /// magic, capacity and <paramref name="token"/> (which that process sent us over the authenticated connection) all match.</summary>
    public static SharedRing Open(string path, int capacity, ReadOnlySpan<byte> token)
    {
        if (!IsValidCapacity(capacity)) throw new InvalidDataException($"a ring of {capacity} bytes is not a power of two from {MinCapacity} to {MaxCapacity}");
        if (token.Length != TokenSize) throw new InvalidDataException($"a token of {token.Length} bytes, not {TokenSize}");
        var stream = new FileStream(path, new FileStreamOptions { Mode = FileMode.Open, Access = FileAccess.ReadWrite, Share = FileShare.ReadWrite, BufferSize = 0 });
        SharedRing? ring = null;
        try
        {
            if (stream.Length != HeaderBytes + (long)capacity)
                throw new InvalidDataException($"{path} holds {stream.Length} bytes, expected {HeaderBytes + (long)capacity}");
            ring = Map(path, stream, capacity);
            var header = new ReadOnlySpan<byte>(ring._base, 32);
            if (BinaryPrimitives.ReadUInt64LittleEndian(header) != Magic || BinaryPrimitives.ReadInt64LittleEndian(header[8..]) != capacity
                || !CryptographicOperations.FixedTimeEquals(header.Slice(16, TokenSize), token))
                throw new InvalidDataException($"{path} is not the ring its creator announced (magic, capacity or token differ)");
            return ring;
        }
        catch
        {
            if (ring is not null) ring.Dispose();
            else stream.Dispose();
            throw;
        }
    }

    /// <summary>Maps the whole file; the mapping takes over <paramref name="stream"/> (closed with it).</summary>
    private static SharedRing Map(string path, FileStream stream, int capacity)
    {
        long length = HeaderBytes + (long)capacity;
        var file = MemoryMappedFile.CreateFromFile(stream, null, length, MemoryMappedFileAccess.ReadWrite, HandleInheritability.None, leaveOpen: false);
        MemoryMappedViewAccessor? view = null;
        try
        {
            view = file.CreateViewAccessor(0, length, MemoryMappedFileAccess.ReadWrite);
            byte* pointer = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref pointer);   // released in Dispose
            return new SharedRing(path, file, view, pointer + view.PointerOffset, capacity);
        }
        catch
        {
            view?.Dispose();
            file.Dispose();
            throw;
        }
    }

    private ref long Head => ref *(long*)(_base + HeadOffset);
    private ref long Tail => ref *(long*)(_base + TailOffset);
    private ref int ConsumerWaits => ref *(int*)(_base + ConsumerWaitsOffset);
    private ref int ProducerWaits => ref *(int*)(_base + ProducerWaitsOffset);

    // ----- producer (the sending rank)

    /// <summary>Free bytes, as the producer sees them.</summary>
    public long Writable
    {
        get
        {
            Enter();
            try { return _capacity - Used(); }
            finally { Exit(); }
        }
    }

    /// <summary>
    /// Copies as much of <paramref name="source"/> as fits (at most <see cref="PublishBytes"/>) and publishes it; returns how
    /// many bytes. <paramref name="wakeConsumer"/>: the consumer waits for what is readable now, ring its doorbell.
    /// </summary>
    public int Write(ReadOnlySpan<byte> source, out bool wakeConsumer)
    {
        wakeConsumer = false;
        Enter();
        try
        {
            var n = (int)Math.Min(Math.Min(_capacity - Used(), source.Length), PublishBytes);
            if (n == 0) return 0;
            var at = (int)(_head & _mask);
            var first = Math.Min(n, _capacity - at);
            source[..first].CopyTo(new Span<byte>(_data + at, first));
            source[first..n].CopyTo(new Span<byte>(_data, n - first));
            _head += n;
            Volatile.Write(ref Head, _head);
            Interlocked.MemoryBarrier();   // the head before the consumer's announcement (see ArmConsumer)
            wakeConsumer = Take(ref ConsumerWaits, _head - Volatile.Read(ref Tail));
            return n;
        }
        finally { Exit(); }
    }

    /// <summary>Announces that the producer waits for <paramref name="wanted"/> free bytes; true (and withdrawn) when they are free already.</summary>
    public bool ArmProducer(int wanted)
    {
        Enter();
        try
        {
            Interlocked.Exchange(ref ProducerWaits, wanted);
            if (_capacity - Used() < wanted) return false;
            Interlocked.Exchange(ref ProducerWaits, 0);   // 0 back: the consumer took it, and a stale doorbell is on its way
            return true;
        }
        finally { Exit(); }
    }

    private long Used()
    {
        var used = _head - Volatile.Read(ref Tail);
        if ((ulong)used > (ulong)_capacity) throw Corrupt($"read position is {used} bytes behind the write position");
        return used;
    }

    // ----- consumer (the receiving rank)

    /// <summary>Readable bytes, as the consumer sees them.</summary>
    public long Readable
    {
        get
        {
            Enter();
            try { return Available(); }
            finally { Exit(); }
        }
    }

    /// <summary>Copies what is readable, up to <paramref name="destination"/>'s length (at most <see cref="PublishBytes"/>), and frees it;
    /// <paramref name="wakeProducer"/>: the producer waits for the space now free, ring its doorbell.</summary>
    public int Read(Span<byte> destination, out bool wakeProducer)
    {
        wakeProducer = false;
        Enter();
        try
        {
            var n = (int)Math.Min(Math.Min(Available(), destination.Length), PublishBytes);
            if (n == 0) return 0;
            var at = (int)(_tail & _mask);
            var first = Math.Min(n, _capacity - at);
            new ReadOnlySpan<byte>(_data + at, first).CopyTo(destination);
            new ReadOnlySpan<byte>(_data, n - first).CopyTo(destination[first..]);
            wakeProducer = Free(n);
            return n;
        }
        finally { Exit(); }
    }

    /// <summary>
    /// The ring's reduce step without a staging copy: adds whole readable elements of <paramref name="kind"/>, up to
    /// <paramref name="target"/>'s length (at most <see cref="PublishBytes"/>), straight from the mapping into
    /// <paramref name="target"/>, and frees them. An element split by the end of the ring (the stream is not aligned after
    /// a broadcast of an odd length) is put together on the stack first.
    /// </summary>
    public int ReadAdding(Span<byte> target, CollectiveOp kind, out bool wakeProducer)
    {
        wakeProducer = false;
        var size = Reduction.ElementSize(kind);
        Enter();
        try
        {
            var n = (int)Math.Min(Math.Min(Available(), target.Length), PublishBytes);
            n -= n % size;
            if (n == 0) return 0;
            var at = (int)(_tail & _mask);
            var first = Math.Min(n, _capacity - at);
            var whole = first - first % size;
            Reduction.AddInto(kind, target[..whole], new ReadOnlySpan<byte>(_data + at, whole));
            if (whole < first)
            {
                // [at + whole, capacity) holds the element's first bytes, [0, size - split) the rest.
                var split = first - whole;
                Span<byte> element = stackalloc byte[sizeof(long)];
                new ReadOnlySpan<byte>(_data + at + whole, split).CopyTo(element);
                new ReadOnlySpan<byte>(_data, size - split).CopyTo(element[split..]);
                Reduction.AddInto(kind, target.Slice(whole, size), element[..size]);
                Reduction.AddInto(kind, target[(whole + size)..n], new ReadOnlySpan<byte>(_data + (size - split), n - whole - size));
            }
            else if (whole < n)
            {
                Reduction.AddInto(kind, target[whole..n], new ReadOnlySpan<byte>(_data, n - whole));
            }
            wakeProducer = Free(n);
            return n;
        }
        finally { Exit(); }
    }

    /// <summary>Announces that the consumer waits for <paramref name="wanted"/> readable bytes; true (and withdrawn) when they are readable already.</summary>
    public bool ArmConsumer(int wanted)
    {
        Enter();
        try
        {
            Interlocked.Exchange(ref ConsumerWaits, wanted);
            if (Available() < wanted) return false;
            Interlocked.Exchange(ref ConsumerWaits, 0);
            return true;
        }
        finally { Exit(); }
    }

    private long Available()
    {
        var available = Volatile.Read(ref Head) - _tail;
        if ((ulong)available > (ulong)_capacity) throw Corrupt($"write position is {available} bytes ahead of the read position");
        return available;
    }

    /// <summary>Publishes that <paramref name="n"/> more bytes were read; true when the producer waits for the space now free.</summary>
    private bool Free(int n)
    {
        _tail += n;
        Volatile.Write(ref Tail, _tail);
        Interlocked.MemoryBarrier();   // the tail before the producer's announcement (see ArmProducer)
        return Take(ref ProducerWaits, _capacity - (Volatile.Read(ref Head) - _tail));
    }

    /// <summary>Takes the other side's announcement when what it waits for is there: exactly one of the two sides withdraws
    /// an announcement, so a waiter gets at most one doorbell per wait.</summary>
    private static bool Take(ref int waits, long have)
    {
        var wanted = Volatile.Read(ref waits);
        return wanted > 0 && have >= wanted && Interlocked.CompareExchange(ref waits, 0, wanted) == wanted;
    }

    private InvalidDataException Corrupt(string what) => new($"the shared ring {Path} is corrupt: its {what} (capacity {_capacity})");

    private void Enter()
    {
        var added = false;
        _handle.DangerousAddRef(ref added);   // ObjectDisposedException once disposed
    }

    private void Exit() => _handle.DangerousRelease();

    /// <summary>Unmaps (once no access is in flight); the file is the creator's to unlink.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        _handle.ReleasePointer();
        try { _view.Dispose(); }
        catch (IOException) { }   // its msync of tmpfs pages: nothing to lose
        _file.Dispose();
    }
}
