using System.Net.Sockets;

namespace Pretrain.Worker.Collectives;

// A call over two plain TCP links, on Linux, runs as one loop, on the calling thread when it may block (HostCommunicator's
// collectives thread) or else on the ring's pump thread: it receives from prev and sends to
// next with non-blocking system calls, reduces each segment as it completes, and sleeps in poll(2) on both sockets when
// neither can move. The async send and receive loops (RingCommunicator.Collectives.cs) cost two wake-ups per readiness
// (the socket engine's epoll thread, then a thread-pool thread) plus a hand-off from the receive loop to the send loop
// per forwarded segment; here the kernel wakes the one thread that does the work. On these 2-core VMs that took 2 ranks
// from 7.7 to 4.8 ms at 16 MiB and from 28 to 17 ms at 64 MiB, past OpenMPI's polling progress engine without its busy wait
// (docs/BENCHMARKS.md). Two shared-memory links get a loop of the same shape (RingCommunicator.SharedLoop.cs); TLS links
// and mixed rings keep the async loops.
public sealed partial class RingCommunicator
{
    private Pump? _pump;
    private readonly SemaphoreSlim _callPosted = new(0);

    [ThreadStatic] private static bool t_callerRunsCalls;

    /// <summary>
    /// Marks the calling thread as one that may block for as long as a call takes (<see cref="HostCommunicator"/>'s
    /// collectives thread, a benchmark's rank): a plain-TCP ring's calls started on it run their loop right there instead
    /// of on the pump's thread. That saves the two thread wake-ups of a posted call (to the pump and back): 1 MiB over 2
    /// ranks took 0.29 ms on the caller's thread and 0.5 ms posted. Other callers (several ranks of one process on the
    /// thread pool) keep posting, so no rank's call can hold a thread another rank's call needs to start.
    /// </summary>
    public static void RunCallsOnThisThread() => t_callerRunsCalls = true;

    /// <summary>The call on this thread when it may block (<see cref="RunCallsOnThisThread"/>), else on the pump's.</summary>
    private Task RunOnPump(Pump pump, CollectiveOp kind, long sequence, Memory<byte> buffer)
    {
        if (!t_callerRunsCalls) return PostToPump(kind, sequence, buffer);
        RunLoop(pump, kind, sequence, buffer);
        return Task.CompletedTask;
    }

    private void RunLoop(Pump pump, CollectiveOp kind, long sequence, Memory<byte> buffer)
    {
        if (pump is TcpPump tcp) RunPump(tcp, kind, sequence, buffer);
        else RunShared((SharedPump)pump, kind, sequence, buffer);
    }
    private (CollectiveOp Kind, long Sequence, Memory<byte> Buffer, TaskCompletionSource Done) _posted;

    /// <summary>
    /// Runs the call on the pump's thread and waits for it without holding the caller's: the loop sleeps in poll(2), and
    /// ranks of one process (tests, benchmarks) would block each other's calls from ever starting on a shared thread.
    /// </summary>
    private Task PostToPump(CollectiveOp kind, long sequence, Memory<byte> buffer)
    {
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _posted = (kind, sequence, buffer, done);
        _callPosted.Release();
        return done.Task;
    }

    /// <summary>The pump's thread: one call at a time, as posted, until the communicator closes.</summary>
    private void PumpCalls(Pump pump)
    {
        while (true)
        {
            // Idle between calls; a bounded wait, so a communicator closed without a wake-up still ends its thread.
            if (!_callPosted.Wait(IdleCheck))
            {
                if (_disposed) return;
                continue;
            }
            if (_posted.Done is not { } done) return;   // no call posted: the communicator closed
            var (kind, sequence, buffer, _) = _posted;
            _posted = default;
            try
            {
                RunLoop(pump, kind, sequence, buffer);
                done.SetResult();
            }
            catch (Exception e) { done.SetException(e); }   // a bug, not a link failure: those are recorded, not thrown
            if (_disposed) return;
        }
    }

    private static readonly TimeSpan IdleCheck = TimeSpan.FromSeconds(1);

    private void StartPump(Pump pump) =>
        new Thread(() => PumpCalls(pump)) { IsBackground = true, Name = $"ring {Generation}.{Rank} pump" }.Start();

    /// <summary>Lets the pump's thread end (once any call in flight has).</summary>
    private void StopPump() => _callPosted.Release();

    /// <summary>A call loop's links, and the event that wakes the loop on a failure or an abort.</summary>
    private abstract class Pump : IDisposable
    {
        private readonly Lock _gate = new();
        private readonly WakeEvent _wake = new();
        private bool _running, _disposed;

        /// <summary>The event to poll for one call, or null once disposed; <see cref="Leave"/> when the call ends.</summary>
        public WakeEvent? Enter()
        {
            lock (_gate)
            {
                if (_disposed) return null;
                _running = true;
                _wake.Drain();   // a wake-up meant for an earlier call
                return _wake;
            }
        }

        public void Leave()
        {
            lock (_gate)
            {
                _running = false;
                if (_disposed) CloseEvents();
            }
        }

        public void Wake() => _wake.Signal();

        /// <summary>Closes the event now, or when the call in flight leaves (it may be polling it).</summary>
        public void Dispose()
        {
            lock (_gate)
            {
                _disposed = true;
                if (!_running) CloseEvents();
            }
        }

        /// <summary>Closes the descriptors a call polls, once none does.</summary>
        protected virtual void CloseEvents() => _wake.Dispose();
    }

    /// <summary>Both links plain TCP: their sockets.</summary>
    private sealed class TcpPump(Socket toNext, Socket fromPrev) : Pump
    {
        public Socket ToNext => toNext;
        public Socket FromPrev => fromPrev;
        public int LowWater = 1;   // fromPrev's SO_RCVLOWAT as last set
    }

    /// <summary>
    /// A pump when both links are plain TCP (<see cref="CollectiveOptions.TcpPump"/>) or both shared memory
    /// (<see cref="CollectiveOptions.SharedMemoryPump"/>) on Linux; null keeps the async loops (TLS, mixed rings, other systems).
    /// </summary>
    private Pump? MakePump(IRingLink toNext, IRingLink fromPrev)
    {
        if (!OperatingSystem.IsLinux()) return null;
        if (toNext is SharedMemorySender sender && fromPrev is SharedMemoryReceiver receiver)
            return _options.SharedMemoryPump ? new SharedPump(sender, receiver) : null;
        if (!_options.TcpPump || toNext is not RingLink { Transport: LinkTransport.Tcp } next || fromPrev is not RingLink { Transport: LinkTransport.Tcp } prev)
            return null;
        // Registered there since the handshake's async calls, each socket would have the engine's epoll thread wake, and
        // queue a thread-pool item, for every readiness change the pump causes: 1 MiB over 2 ranks took 0.29 ms detached and
        // 0.6 ms not, in a loop on the caller's thread. Nothing of .NET's waits on these sockets from here on: the pump
        // and the notice watcher poll them.
        next.Detach();
        prev.Detach();
        return new TcpPump(next.Socket, prev.Socket);
    }

    /// <summary>
    /// One call's header and passes (<see cref="_passes"/>) through <paramref name="pump"/>, on this thread. Failures are
    /// recorded as the async loops record them (<see cref="OnLinkError"/>, blaming prev for what comes in and next for what
    /// goes out); the loop stops at the first, or when <see cref="Fail"/> or an abort wakes it.
    /// </summary>
    private unsafe void RunPump(TcpPump pump, CollectiveOp kind, long sequence, Memory<byte> buffer)
    {
        var wake = pump.Enter()?.Fd ?? -1;
        if (wake < 0)
        {
            OnLinkError(new ObjectDisposedException(nameof(RingCommunicator)), Prev);
            return;
        }
        bool nextRef = false, prevRef = false;
        try
        {
            // Held for the call, so a concurrent dispose cannot close (and the process reuse) a descriptor we are polling.
            pump.ToNext.SafeHandle.DangerousAddRef(ref nextRef);
            pump.FromPrev.SafeHandle.DangerousAddRef(ref prevRef);
            var sendFd = (int)pump.ToNext.SafeHandle.DangerousGetHandle();
            var receiveFd = (int)pump.FromPrev.SafeHandle.DangerousGetHandle();
            using var pin = buffer.Pin();
            fixed (byte* scratch = _scratch)
            fixed (byte* headerOut = _headerOut)
            fixed (byte* headerIn = _headerIn)
                Loop(pump, sendFd, receiveFd, wake, kind, sequence, buffer.Length, (byte*)pin.Pointer, scratch, headerOut, headerIn);
        }
        catch (ObjectDisposedException e) { OnLinkError(e, Prev); }   // a socket disposed before the call took hold of it
        finally
        {
            if (prevRef) pump.FromPrev.SafeHandle.DangerousRelease();
            if (nextRef) pump.ToNext.SafeHandle.DangerousRelease();
            pump.Leave();
        }
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]   // optimised from the first call: a call is one long-running loop
    private unsafe void Loop(TcpPump pump, int sendFd, int receiveFd, int wake, CollectiveOp kind, long sequence, int length,
        byte* data, byte* scratch, byte* headerOut, byte* headerIn)
    {
        int segment = _segment, header = WireFormat.CallHeaderSize;
        // Send side: the header, then pass by pass, segment by segment; a SendWaits segment goes once as many segments
        // were received (and reduced) as it is the forwarded one of — the async loops' ProgressCounter, counted here.
        int headerSent = 0;
        var tx = Start(send: true);
        long received = 0;
        // Receive side: the header, checked, then pass by pass into the data (or into scratch, added in when a segment is whole).
        int headerReceived = 0;
        var rx = Start(send: false);
        Span<LinuxSockets.PollFd> fds = stackalloc LinuxSockets.PollFd[3];
        var pollMs = (int)Math.Clamp(WatchdogPeriod.TotalMilliseconds, 10, 1000);

        while (true)
        {
            if (_failure != null || _abort.IsCancellationRequested) break;
            bool moved = false, receiving = !_receiveDone, sending = !_sendDone;

            // Receive what is there.
            if (receiving)
            {
                try
                {
                    if (headerReceived < header)
                    {
                        if (pump.LowWater != 1) pump.LowWater = SocketIo.SetLowWaterMark(pump.FromPrev, 1);
                        var n = LinuxSockets.Receive(receiveFd, headerIn + headerReceived, header - headerReceived);
                        if (n == 0) throw new EndOfStreamException();
                        if (n > 0)
                        {
                            moved = true;
                            headerReceived += n;
                            if (headerReceived == header) HeaderReceived(kind, sequence, length, rx);
                        }
                    }
                    else
                    {
                        var pass = _passes[rx.Pass];
                        var size = rx.SegmentLength(_passes, segment, send: false);
                        // Woken once a quarter of a 1 MiB socket buffer is in, not per 64 KiB packet (SocketIo.LowWaterBytes), and
                        // never for more than this segment: the rest may only come once we forwarded it.
                        var remaining = size - rx.Done;
                        if (pump.LowWater > remaining || (pump.LowWater == 1 && remaining >= SocketIo.MarkedReceiveBytes))
                            pump.LowWater = SocketIo.SetLowWaterMark(pump.FromPrev, remaining >= SocketIo.MarkedReceiveBytes ? Math.Min(SocketIo.LowWaterBytes, remaining) : 1);
                        var into = pass.Reduce ? scratch + rx.Done : data + pass.ReceiveOffset + rx.Offset + rx.Done;
                        var n = LinuxSockets.Receive(receiveFd, into, remaining);
                        if (n == 0) throw new EndOfStreamException();
                        if (n > 0)
                        {
                            moved = true;
                            Touch();
                            if (n == remaining && pass.Reduce)
                                Reduction.AddInto(kind, new Span<byte>(data + pass.ReceiveOffset + rx.Offset, size), new ReadOnlySpan<byte>(scratch, size));
                            if (Advance(ref rx, n, size, send: false)) received++;
                        }
                    }
                }
                catch (Exception e)
                {
                    OnLinkError(e, Prev);
                    break;
                }
            }

            // Send what may go.
            var sendable = false;
            if (sending)
            {
                try
                {
                    if (headerSent < header)
                    {
                        sendable = true;
                        var n = LinuxSockets.Send(sendFd, headerOut + headerSent, header - headerSent);
                        if (n > 0)
                        {
                            moved = true;
                            headerSent += n;
                            if (headerSent == header && tx.Pass == _passCount) _sendDone = true;
                        }
                    }
                    else
                    {
                        var pass = _passes[tx.Pass];
                        if (SendMayGo(ref tx, received))
                        {
                            sendable = true;
                            var size = tx.SegmentLength(_passes, segment, send: true);
                            var n = LinuxSockets.Send(sendFd, data + pass.SendOffset + tx.Offset + tx.Done, size - tx.Done);
                            if (n > 0)
                            {
                                moved = true;
                                if (Advance(ref tx, n, size, send: true))
                                    Touch();
                            }
                        }
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

            // Neither side can move: sleep until prev's data comes, next's buffer has room, or a failure wakes us.
            var count = 0;
            fds[count++] = new LinuxSockets.PollFd { Fd = wake, Events = LinuxSockets.PollIn };
            if (!_receiveDone) fds[count++] = new LinuxSockets.PollFd { Fd = receiveFd, Events = LinuxSockets.PollIn };
            if (!_sendDone && sendable) fds[count++] = new LinuxSockets.PollFd { Fd = sendFd, Events = LinuxSockets.PollOut };
            try
            {
                if (LinuxSockets.Poll(fds[..count], pollMs) && fds[0].Returned != 0) LinuxSockets.Drain(wake);
            }
            catch (SocketException e)
            {
                OnLinkError(e, Prev);
                break;
            }
        }
        if (_abort.IsCancellationRequested && _failure == null) OnLinkError(new ObjectDisposedException(nameof(RingCommunicator)), Prev);   // closed abruptly
    }

    /// <summary>
    /// With a pump, failure notices from next are read on a thread of the communicator's own, asleep in poll(2) on the
    /// socket, not by an async receive: a pending receive would have the socket engine hand every readiness of the data
    /// the pump sends on that socket to the thread pool (to find no notice there), which cost more than the pump saved.
    /// </summary>
    private void StartWatchingNext(Socket toNext) =>
        new Thread(() => WatchNextPolling(toNext)) { IsBackground = true, Name = $"ring {Generation}.{Rank} notices" }.Start();

    private void WatchNextPolling(Socket toNext)
    {
        using var stop = new WakeEvent();
        using var registration = _watchStop.Token.Register(stop.Signal);
        var header = new byte[WireFormat.NoticeHeaderSize];
        var added = false;
        try
        {
            toNext.SafeHandle.DangerousAddRef(ref added);   // the descriptor stays ours until this thread is done with it
            var fd = (int)toNext.SafeHandle.DangerousGetHandle();
            while (true)
            {
                var closed = !ReceiveNotice(fd, stop, header);
                byte[]? text = null;
                if (!closed && WireFormat.ReadNoticeHeader(header, out _, out var length, out _) is null)
                {
                    text = new byte[length];
                    if (!ReceiveNotice(fd, stop, text)) text = null;
                }
                if (!OnNoticeAsync(header, closed, text).GetAwaiter().GetResult()) return;
            }
        }
        catch (Exception ex) { OnWatchError(ex); }
        finally
        {
            if (added) toNext.SafeHandle.DangerousRelease();
        }
    }

    /// <summary>Fills <paramref name="buffer"/> from <paramref name="fd"/>; false when the peer closed first. Stops on <see cref="_watchStop"/>.</summary>
    private unsafe bool ReceiveNotice(int fd, WakeEvent stop, byte[] buffer)
    {
        Span<LinuxSockets.PollFd> fds = stackalloc LinuxSockets.PollFd[2];
        fixed (byte* start = buffer)
        {
            for (var got = 0; got < buffer.Length;)
            {
                _watchStop.Token.ThrowIfCancellationRequested();
                var n = LinuxSockets.Receive(fd, start + got, buffer.Length - got);
                if (n == 0) return false;
                if (n > 0)
                {
                    got += n;
                    continue;
                }
                fds[0] = new LinuxSockets.PollFd { Fd = fd, Events = LinuxSockets.PollIn };
                fds[1] = new LinuxSockets.PollFd { Fd = stop.Fd, Events = LinuxSockets.PollIn };
                LinuxSockets.Poll(fds, 1000);
            }
        }
        return true;
    }

    /// <summary>Where one direction of a call loop is: its pass, the segment's offset in that pass, and the bytes of the segment done.</summary>
    private struct PassCursor
    {
        public int Pass, Offset, Done;
        public long Waited;     // send side: segments received that forwarded segments have waited for
        public bool Cleared;    // send side: the segment at the cursor may go

        public readonly int SegmentLength(RingPass[] passes, int segment, bool send) =>
            Math.Min(segment, (send ? passes[Pass].SendLength : passes[Pass].ReceiveLength) - Offset);
    }

    /// <summary>A direction's cursor at its first pass with something to move (broadcast's ends have none).</summary>
    private PassCursor Start(bool send)
    {
        var cursor = new PassCursor();
        SkipEmpty(ref cursor.Pass, send);
        return cursor;
    }

    /// <summary>
    /// Counts <paramref name="n"/> more bytes of the segment of <paramref name="size"/> at <paramref name="cursor"/>; true
    /// when that completed it. The cursor then moves to the next segment (past empty passes), and the direction is done
    /// after the last pass.
    /// </summary>
    private bool Advance(ref PassCursor cursor, int n, int size, bool send)
    {
        cursor.Done += n;
        if (cursor.Done < size) return false;
        cursor.Done = 0;
        cursor.Cleared = false;
        cursor.Offset += size;
        if (cursor.Offset == (send ? _passes[cursor.Pass].SendLength : _passes[cursor.Pass].ReceiveLength))
        {
            cursor.Offset = 0;
            cursor.Pass++;
            SkipEmpty(ref cursor.Pass, send);
            if (cursor.Pass == _passCount)
            {
                if (send) _sendDone = true;
                else _receiveDone = true;
            }
        }
        return true;
    }

    /// <summary>Prev's call header is in: it must describe the same call (else a desync, blaming prev); nothing follows for an empty schedule.</summary>
    private void HeaderReceived(CollectiveOp kind, long sequence, int length, in PassCursor rx)
    {
        if (WireFormat.CheckCallHeader(_headerIn, kind, Generation, sequence, length) is { } mismatch)
            throw new CollectiveException($"desync: rank {Prev.Rank} {mismatch}", Generation, Prev.Rank, PeerName(Prev.Rank));
        Touch();
        if (rx.Pass == _passCount) _receiveDone = true;
    }

    /// <summary>
    /// Whether the send cursor's segment may go: at once, or in a SendWaits pass once as many segments were received (and
    /// reduced) as it is the forwarded one of — the async loops' ProgressCounter, counted here.
    /// </summary>
    private bool SendMayGo(ref PassCursor tx, long received)
    {
        if (tx.Cleared) return true;
        if (_passes[tx.Pass].SendWaits)
        {
            if (received <= tx.Waited) return false;
            tx.Waited++;
        }
        return tx.Cleared = true;
    }

    private void SkipEmpty(ref int pass, bool send)
    {
        while (pass < _passCount && (send ? _passes[pass].SendLength : _passes[pass].ReceiveLength) == 0) pass++;
    }
}
