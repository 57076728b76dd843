using System.Diagnostics;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Runtime.ExceptionServices;
using System.Threading.Channels;

namespace Pretrain.Worker.Collectives;

/// <summary>
/// The sending end of a shared-memory link: data goes into the <see cref="SharedRing"/>, one copy from the caller's memory.
/// When the ring is full it spins briefly (the consumer usually frees space within microseconds), then announces how much
/// space it waits for and sleeps on a doorbell: the consumer sends one byte back on the TCP connection when it freed that
/// much, so a waiting rank blocks in the kernel instead of burning one of the host's cores. That direction also carries
/// the receiving rank's failure notices, so one pump reads it all the time: doorbells wake the sender, notices are
/// queued for <see cref="ReceiveExactlyAsync"/> (the communicator's notice watcher), and the end of the connection — the
/// peer closed it, or died — fails both, as it does a TCP link.
/// </summary>
internal sealed class SharedMemorySender : IRingLink
{
    private readonly RingLink _link;
    private readonly SharedRing _ring;
    private readonly long _spinTicks;
    private readonly Doorbell _space = new();
    private readonly Channel<byte[]> _notices = Channel.CreateUnbounded<byte[]>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
    private readonly CancellationTokenSource _stop = new();
    private Exception? _closedBy;   // why the connection ended, or null for a clean close; set before _notices completes
    private byte[]? _frame;         // the notice being read out, and how far
    private int _frameOffset;

    public SharedMemorySender(RingLink link, SharedRing ring, TimeSpan spin)
    {
        (_link, _ring) = (link, ring);
        _spinTicks = (long)(spin.TotalSeconds * Stopwatch.Frequency);
        _ = PumpAsync();
    }

    public LinkTransport Transport => LinkTransport.SharedMemory;
    public int Capacity => _ring.Capacity;

    // For RingCommunicator's call loop (SharedLoop.cs), which writes the ring itself and sleeps on UseSpaceEvent's event for room.
    internal SharedRing Mapping => _ring;
    internal RingLink Link => _link;
    internal long SpinTicks => _spinTicks;

    /// <summary>
    /// An event signalled at every doorbell from the consumer, and when the connection ends, made for the call loop that
    /// asks (and closed by it: the loop may be polling it when this link is disposed).
    /// </summary>
    internal WakeEvent UseSpaceEvent()
    {
        var made = new WakeEvent();
        Volatile.Write(ref _spaceEvent, made);
        if (Ended is not null) made.Signal();   // ended before: a loop polling it must not sleep
        return made;
    }

    private WakeEvent? _spaceEvent;

    /// <summary>Why the connection ended (the consumer closed it: an <see cref="EndOfStreamException"/>), or null while it is open.</summary>
    internal Exception? Ended => Volatile.Read(ref _ended);
    private Exception? _ended;

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask SendAllAsync(ReadOnlyMemory<byte> buffer, CancellationToken ct)
    {
        while (buffer.Length > 0)
        {
            var n = _ring.Write(buffer.Span, out var wake);
            if (wake) Ring(_link);
            if (n > 0)
            {
                buffer = buffer[n..];
                continue;
            }
            // Woken for a quarter of the ring (or what is left to send), not for every 64 KiB the consumer frees.
            await WaitForSpaceAsync((int)Math.Min(buffer.Length, _ring.Capacity / 4), ct);
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask WaitForSpaceAsync(int wanted, CancellationToken ct)
    {
        if (_ring.Writable >= wanted) return;
        if (_spinTicks > 0)
        {
            var spinner = new SpinWait();
            for (var deadline = Stopwatch.GetTimestamp() + _spinTicks; Stopwatch.GetTimestamp() < deadline;)
            {
                spinner.SpinOnce(sleep1Threshold: -1);   // yields the core after a few rounds; never sleeps a whole millisecond
                if (_ring.Writable >= wanted) return;
            }
        }
        while (!_ring.ArmProducer(wanted)) await _space.WaitAsync(ct);
    }

    /// <summary>The receiving rank's failure notices, byte for byte as it sent them; false once the connection closed.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<bool> ReceiveExactlyAsync(Memory<byte> buffer, CancellationToken ct)
    {
        while (buffer.Length > 0)
        {
            if (_frame is null || _frameOffset == _frame.Length)
            {
                _frameOffset = 0;
                if (_notices.Reader.TryRead(out _frame)) continue;
                if (await _notices.Reader.WaitToReadAsync(ct)) continue;
                if (Volatile.Read(ref _closedBy) is { } error) ExceptionDispatchInfo.Throw(error);
                return false;
            }
            var take = Math.Min(buffer.Length, _frame.Length - _frameOffset);
            _frame.AsMemory(_frameOffset, take).CopyTo(buffer);
            _frameOffset += take;
            buffer = buffer[take..];
        }
        return true;
    }

    public ValueTask<bool> ReceiveAddingAsync(Memory<byte> target, CollectiveOp kind, Memory<byte> scratch, CancellationToken ct) =>
        ValueTask.FromException<bool>(new NotSupportedException("the sending end of a shared-memory link receives no data"));

    public void SendNotice(byte[] notice) =>
        throw new NotSupportedException("failure notices go to the previous rank, on the receiving end of its link");

    /// <summary>
    /// Reads the reverse direction until it ends: a <see cref="RingLink.DoorbellByte"/> byte between notices is a doorbell; a
    /// notice is a header (<see cref="WireFormat.NoticeHeaderSize"/>, its length checked before anything is allocated for
    /// its text) and its text. Garbage is passed on as it came, for the watcher to name, and ends the pump.
    /// </summary>
    private async Task PumpAsync()
    {
        var buffer = new byte[256];
        var header = new byte[WireFormat.NoticeHeaderSize];
        var headerFilled = 0;
        byte[]? notice = null;
        var noticeFilled = 0;
        Exception? ended = null;
        try
        {
            while (true)
            {
                var n = await _link.Socket.ReceiveAsync(buffer.AsMemory(), SocketFlags.None, _stop.Token);
                if (n == 0) break;
                for (var i = 0; i < n;)
                {
                    if (notice is not null)
                    {
                        var take = Math.Min(n - i, notice.Length - noticeFilled);
                        buffer.AsSpan(i, take).CopyTo(notice.AsSpan(noticeFilled));
                        (i, noticeFilled) = (i + take, noticeFilled + take);
                        if (noticeFilled < notice.Length) continue;
                        _notices.Writer.TryWrite(notice);
                        notice = null;
                        continue;
                    }
                    if (headerFilled == 0 && buffer[i] == RingLink.DoorbellByte)
                    {
                        _space.Ring();
                        Volatile.Read(ref _spaceEvent)?.Signal();
                        i++;
                        continue;
                    }
                    header[headerFilled++] = buffer[i++];
                    if (headerFilled < header.Length) continue;
                    headerFilled = 0;
                    if (WireFormat.ReadNoticeHeader(header, out _, out var length, out _) is { } garbage)
                    {
                        _notices.Writer.TryWrite((byte[])header.Clone());
                        throw new InvalidDataException($"garbage on the notice channel: {garbage}");
                    }
                    notice = new byte[WireFormat.NoticeHeaderSize + length];
                    header.CopyTo(notice, 0);
                    noticeFilled = header.Length;
                    if (length > 0) continue;
                    _notices.Writer.TryWrite(notice);
                    notice = null;
                }
            }
        }
        catch (Exception e)
        {
            ended = e;
        }
        Volatile.Write(ref _closedBy, ended);
        _notices.Writer.TryComplete();
        var fault = ended ?? new EndOfStreamException("the receiving rank closed the connection");
        Volatile.Write(ref _ended, fault);
        Volatile.Read(ref _spaceEvent)?.Signal();
        _space.Fault(fault);
    }

    /// <summary>A doorbell to the other side. A failed one is dropped: the connection is gone, and its end fails the link anyway.</summary>
    internal static void Ring(RingLink link)
    {
        try { link.SendDoorbell(); }
        catch (Exception e) when (e is SocketException or ObjectDisposedException) { }
    }

    public void Dispose()
    {
        _stop.Cancel();
        _link.Dispose();
        _ring.Dispose();
        _space.Fault(new ObjectDisposedException(nameof(SharedMemorySender)));
        // The space event stays open: a call loop may be polling it; the communicator closes it with its pump.
    }
}
