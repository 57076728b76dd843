using System.Diagnostics;

namespace Pretrain.Worker.Collectives;

// A call over two shared-memory links, on Linux, runs as one loop, as a plain-TCP call does (RingCommunicator.Pump.cs): it
// reads (and adds) what prev published in its ring and writes into next's ring whatever may go, in one thread, so no
// segment waits for a hand-off between a receive loop and a send loop. When neither side can move it spins briefly (the
// other rank usually publishes within microseconds), then announces what it waits for and sleeps in poll(2) on prev's
// doorbells (that socket is out of .NET's socket engine), on next's space doorbells (which the sender's own reader
// signals on an eventfd, since that connection also carries next's failure notices), and on the call's wake event.
public sealed partial class RingCommunicator
{
    /// <summary>Both links shared memory: their ends, with prev's doorbell socket detached for the loop's own polling.</summary>
    private sealed class SharedPump : Pump
    {
        public SharedPump(SharedMemorySender next, SharedMemoryReceiver prev)
        {
            (Next, Prev) = (next, prev);
            Space = next.UseSpaceEvent();
            prev.Link.Detach();
        }

        public SharedMemorySender Next { get; }
        public SharedMemoryReceiver Prev { get; }
        public WakeEvent Space { get; }
        public bool PrevClosed;   // prev's doorbell connection ended: what it published is all there will be

        protected override void CloseEvents()
        {
            base.CloseEvents();
            Space.Dispose();
        }
    }

    private unsafe void RunShared(SharedPump pump, CollectiveOp kind, long sequence, Memory<byte> buffer)
    {
        var wake = pump.Enter()?.Fd ?? -1;
        if (wake < 0)
        {
            OnLinkError(new ObjectDisposedException(nameof(RingCommunicator)), Prev);
            return;
        }
        var prevLink = pump.Prev.Link;
        var added = false;
        try
        {
            prevLink.Socket.SafeHandle.DangerousAddRef(ref added);   // polled here: not closed (nor its number reused) under us
            using var pin = buffer.Pin();
            fixed (byte* headerOut = _headerOut)
            fixed (byte* headerIn = _headerIn)
                SharedLoop(pump, (int)prevLink.Socket.SafeHandle.DangerousGetHandle(), wake, kind, sequence, buffer.Length, (byte*)pin.Pointer, headerOut, headerIn);
        }
        catch (ObjectDisposedException e) { OnLinkError(e, Prev); }
        finally
        {
            if (added) prevLink.Socket.SafeHandle.DangerousRelease();
            pump.Leave();
        }
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private unsafe void SharedLoop(SharedPump pump, int doorbellFd, int wake, CollectiveOp kind, long sequence, int length,
        byte* data, byte* headerOut, byte* headerIn)
    {
        var next = pump.Next.Mapping;
        var prev = pump.Prev.Mapping;
        var spaceFd = pump.Space.Fd;
        var spinTicks = Math.Max(pump.Prev.SpinTicks, pump.Next.SpinTicks);
        int segment = _segment, header = WireFormat.CallHeaderSize;
        // The same bookkeeping as the TCP loop: pass by pass, segment by segment, a SendWaits segment going once as many
        // segments were received (and added in) as it is the forwarded one of.
        int headerSent = 0, headerReceived = 0;
        PassCursor tx = Start(send: true), rx = Start(send: false);
        long received = 0;
        Span<LinuxSockets.PollFd> fds = stackalloc LinuxSockets.PollFd[3];
        Span<byte> doorbells = stackalloc byte[64];
        var pollMs = (int)Math.Clamp(WatchdogPeriod.TotalMilliseconds, 10, 1000);

        while (true)
        {
            if (_failure != null || _abort.IsCancellationRequested) break;
            bool moved = false;
            int readWanted = 0, writeWanted = 0;   // what a wait would be for: > 0 when that side is stuck on the ring

            if (!_receiveDone)
            {
                try
                {
                    int n;
                    bool wakeProducer;
                    if (headerReceived < header)
                    {
                        n = prev.Read(new Span<byte>(headerIn + headerReceived, header - headerReceived), out wakeProducer);
                        if (n > 0)
                        {
                            headerReceived += n;
                            if (headerReceived == header) HeaderReceived(kind, sequence, length, rx);
                        }
                        else readWanted = header - headerReceived;
                    }
                    else
                    {
                        var pass = _passes[rx.Pass];
                        var size = rx.SegmentLength(_passes, segment, send: false);
                        var into = new Span<byte>(data + pass.ReceiveOffset + rx.Offset + rx.Done, size - rx.Done);
                        n = pass.Reduce ? prev.ReadAdding(into, kind, out wakeProducer) : prev.Read(into, out wakeProducer);
                        if (n > 0)
                        {
                            Touch();
                            if (Advance(ref rx, n, size, send: false)) received++;
                        }
                        // Woken for 64 KiB (or what is left of the segment), as the async receiver waits.
                        else readWanted = Math.Min(into.Length, SharedMemoryReceiver.WakeBytes);
                    }
                    if (wakeProducer) SharedMemorySender.Ring(pump.Prev.Link);
                    if (n > 0) moved = true;
                    else if (pump.PrevClosed) throw new EndOfStreamException();
                }
                catch (Exception e)
                {
                    OnLinkError(e, Prev);
                    break;
                }
            }

            if (!_sendDone)
            {
                try
                {
                    int n = 0, left = 0;
                    bool wakeConsumer = false;
                    if (headerSent < header)
                    {
                        left = header - headerSent;
                        n = next.Write(new ReadOnlySpan<byte>(headerOut + headerSent, left), out wakeConsumer);
                        headerSent += n;
                        if (headerSent == header && tx.Pass == _passCount) _sendDone = true;
                    }
                    else
                    {
                        var pass = _passes[tx.Pass];
                        if (SendMayGo(ref tx, received))
                        {
                            var size = tx.SegmentLength(_passes, segment, send: true);
                            left = size - tx.Done;
                            n = next.Write(new ReadOnlySpan<byte>(data + pass.SendOffset + tx.Offset + tx.Done, left), out wakeConsumer);
                            if (n > 0 && Advance(ref tx, n, size, send: true))
                                Touch();
                        }
                    }
                    if (wakeConsumer) SharedMemorySender.Ring(pump.Next.Link);
                    if (n > 0) moved = true;
                    else if (left > 0)
                    {
                        if (pump.Next.Ended is { } ended) throw ended;
                        // Woken for a quarter of the ring (or what is left to send), as the async sender waits.
                        writeWanted = Math.Min(left, next.Capacity / 4);
                    }
                }
                catch (Exception e)
                {
                    OnLinkError(e, Next);
                    break;
                }
            }

            if (_receiveDone && _sendDone) break;
            if (moved) continue;

            try
            {
                if (spinTicks > 0 && SpinFor(prev, readWanted, next, writeWanted, spinTicks)) continue;
                // Announce, then look once more (SharedRing's no-lost-wake-up handshake); sleep only if still stuck.
                if (readWanted > 0 && prev.ArmConsumer(readWanted)) continue;
                if (writeWanted > 0 && next.ArmProducer(writeWanted)) continue;
            }
            catch (Exception e)
            {
                OnLinkError(e, writeWanted > 0 && readWanted == 0 ? Next : Prev);
                break;
            }
            var count = 0;
            fds[count++] = new LinuxSockets.PollFd { Fd = wake, Events = LinuxSockets.PollIn };
            int doorbellAt = -1, spaceAt = -1;
            if (readWanted > 0 && !pump.PrevClosed)
            {
                doorbellAt = count;
                fds[count++] = new LinuxSockets.PollFd { Fd = doorbellFd, Events = LinuxSockets.PollIn };
            }
            if (writeWanted > 0)
            {
                spaceAt = count;
                fds[count++] = new LinuxSockets.PollFd { Fd = spaceFd, Events = LinuxSockets.PollIn };
            }
            try
            {
                if (!LinuxSockets.Poll(fds[..count], pollMs)) continue;
                if (fds[0].Returned != 0) LinuxSockets.Drain(wake);
                if (spaceAt >= 0 && fds[spaceAt].Returned != 0) LinuxSockets.Drain(spaceFd);
                // Any number of doorbells, stale ones too: each only says "look again". The end of the connection ends the wait.
                if (doorbellAt >= 0 && fds[doorbellAt].Returned != 0)
                    fixed (byte* bells = doorbells)
                        while (true)
                        {
                            var n = LinuxSockets.Receive(doorbellFd, bells, doorbells.Length);
                            if (n == 0) pump.PrevClosed = true;
                            if (n <= 0) break;
                        }
            }
            catch (System.Net.Sockets.SocketException e)
            {
                OnLinkError(e, Prev);
                break;
            }
        }
        if (_abort.IsCancellationRequested && _failure == null) OnLinkError(new ObjectDisposedException(nameof(RingCommunicator)), Prev);   // closed abruptly
    }

    /// <summary>Spins up to <paramref name="ticks"/> for what a side waits for; true as soon as either may move.</summary>
    private static bool SpinFor(SharedRing prev, int readWanted, SharedRing next, int writeWanted, long ticks)
    {
        var spinner = new SpinWait();
        for (var deadline = Stopwatch.GetTimestamp() + ticks; Stopwatch.GetTimestamp() < deadline;)
        {
            spinner.SpinOnce(sleep1Threshold: -1);   // yields the core after a few rounds; never sleeps a whole millisecond
            if (readWanted > 0 && prev.Readable >= readWanted) return true;
            if (writeWanted > 0 && next.Writable >= writeWanted) return true;
        }
        return false;
    }
}
