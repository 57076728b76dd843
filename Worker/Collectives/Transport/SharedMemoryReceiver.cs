using System.Diagnostics;
using System.Net.Sockets;
using System.Runtime.CompilerServices;

namespace Pretrain.Worker.Collectives;

/// <summary>
/// The receiving end of a shared-memory link: data comes out of the <see cref="SharedRing"/> with one copy into the
/// caller's memory, and a reduce step adds straight from the mapping (no copy at all before the sum). When the ring is
/// empty it spins briefly, then announces how much it waits for and sleeps reading the TCP connection, on which the
/// sender sends nothing but doorbells — so the end of that connection (the sender closed it or died) ends the wait as it
/// ends a TCP receive: what the sender wrote before is still read, then the receive reports the close. Failure notices
/// go back on the same connection, and so do its own doorbells when the sender waits for space.
/// </summary>
internal sealed class SharedMemoryReceiver : IRingLink
{
    /// <summary>Woken for this much data (or what is left to receive): one doorbell per 64 KiB the sender publishes at most.</summary>
    internal const int WakeBytes = SharedRing.PublishBytes;

    private readonly RingLink _link;
    private readonly SharedRing _ring;
    private readonly long _spinTicks;
    private readonly byte[] _doorbells = new byte[64];

    public SharedMemoryReceiver(RingLink link, SharedRing ring, TimeSpan spin)
    {
        (_link, _ring) = (link, ring);
        _spinTicks = (long)(spin.TotalSeconds * Stopwatch.Frequency);
    }

    public LinkTransport Transport => LinkTransport.SharedMemory;
    public int Capacity => _ring.Capacity;

    // For RingCommunicator's call loop (SharedLoop.cs), which reads the ring and polls the doorbells itself.
    internal SharedRing Mapping => _ring;
    internal RingLink Link => _link;
    internal long SpinTicks => _spinTicks;

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<bool> ReceiveExactlyAsync(Memory<byte> buffer, CancellationToken ct)
    {
        while (buffer.Length > 0)
        {
            var n = _ring.Read(buffer.Span, out var wake);
            if (wake) SharedMemorySender.Ring(_link);
            if (n > 0)
            {
                buffer = buffer[n..];
                continue;
            }
            if (!await WaitForDataAsync(Math.Min(buffer.Length, WakeBytes), ct)) return false;
        }
        return true;
    }

    /// <summary>Adds what arrives into <paramref name="target"/> from the mapping as it arrives; <paramref name="scratch"/> is not needed.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<bool> ReceiveAddingAsync(Memory<byte> target, CollectiveOp kind, Memory<byte> scratch, CancellationToken ct)
    {
        while (target.Length > 0)
        {
            var n = _ring.ReadAdding(target.Span, kind, out var wake);
            if (wake) SharedMemorySender.Ring(_link);
            if (n > 0)
            {
                target = target[n..];
                continue;
            }
            // At least one whole element: WakeBytes and every target length are multiples of the element size.
            if (!await WaitForDataAsync(Math.Min(target.Length, WakeBytes), ct)) return false;
        }
        return true;
    }

    /// <summary>True once <paramref name="wanted"/> bytes are readable; false when the sender closed the connection before.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<bool> WaitForDataAsync(int wanted, CancellationToken ct)
    {
        if (_ring.Readable >= wanted) return true;
        if (_spinTicks > 0)
        {
            var spinner = new SpinWait();
            for (var deadline = Stopwatch.GetTimestamp() + _spinTicks; Stopwatch.GetTimestamp() < deadline;)
            {
                spinner.SpinOnce(sleep1Threshold: -1);   // yields the core after a few rounds; never sleeps a whole millisecond
                if (_ring.Readable >= wanted) return true;
            }
        }
        while (!_ring.ArmConsumer(wanted))
        {
            // Any number of doorbells, stale ones too: each only says "look again".
            if (await _link.Socket.ReceiveAsync(_doorbells.AsMemory(), SocketFlags.None, ct) == 0)
                return _ring.Readable >= wanted;   // closed: what it published before closing is all there will be
        }
        return true;
    }

    public ValueTask SendAllAsync(ReadOnlyMemory<byte> buffer, CancellationToken ct) =>
        ValueTask.FromException(new NotSupportedException("the receiving end of a shared-memory link sends no data"));

    public void SendNotice(byte[] notice) => _link.SendNotice(notice);

    public void Dispose()
    {
        _link.Dispose();
        _ring.Dispose();
    }
}
