using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace Pretrain.Worker.Collectives;

/// <summary>
/// The few Linux system calls a TCP ring call makes on its own thread (<see cref="RingCommunicator"/>'s pump): non-blocking
/// send and receive on the sockets' descriptors, poll(2) on both at once, and an eventfd another thread writes to wake the
/// poll. .NET's <see cref="Socket"/> would do the same I/O through its socket engine, which hands every readiness from
/// its epoll thread to a thread-pool thread — two wake-ups per event, and on these VMs a wake-up of an idle core costs
/// tens of microseconds (docs/BENCHMARKS.md, Allreduce).
/// </summary>
internal static partial class LinuxSockets
{
    public const short PollIn = 0x001, PollOut = 0x004, PollErr = 0x008, PollHup = 0x010, PollNval = 0x020;
    private const int MsgDontWait = 0x40, MsgNoSignal = 0x4000;
    private const int EfdNonBlock = 0x800, EfdCloexec = 0x80000;
    private const int EAgain = 11, EIntr = 4;

    [StructLayout(LayoutKind.Sequential)]
    public struct PollFd
    {
        public int Fd;
        public short Events;
        public short Returned;
    }

    /// <summary>Bytes received (0: the peer closed), or -1 when none are there yet. Throws <see cref="SocketException"/> on an error.</summary>
    public static unsafe int Receive(int fd, byte* buffer, int length)
    {
        while (true)
        {
            var n = recv(fd, buffer, (nuint)length, MsgDontWait);
            if (n >= 0) return (int)n;
            var errno = Marshal.GetLastPInvokeError();
            if (errno == EAgain) return -1;
            if (errno != EIntr) throw Error(errno);
        }
    }

    /// <summary>Bytes sent, or -1 when the send buffer is full. Throws <see cref="SocketException"/> on an error (no SIGPIPE).</summary>
    public static unsafe int Send(int fd, byte* buffer, int length)
    {
        while (true)
        {
            var n = send(fd, buffer, (nuint)length, MsgDontWait | MsgNoSignal);
            if (n >= 0) return (int)n;
            var errno = Marshal.GetLastPInvokeError();
            if (errno == EAgain) return -1;
            if (errno != EIntr) throw Error(errno);
        }
    }

    /// <summary>Sends all of <paramref name="bytes"/>, waiting in poll(2) for room up to <paramref name="timeoutMs"/> in all.</summary>
    public static unsafe void SendAll(int fd, ReadOnlySpan<byte> bytes, int timeoutMs)
    {
        var deadline = Environment.TickCount64 + timeoutMs;
        Span<PollFd> room = stackalloc PollFd[1];
        fixed (byte* start = bytes)
        {
            for (var sent = 0; sent < bytes.Length;)
            {
                var n = Send(fd, start + sent, bytes.Length - sent);
                if (n > 0)
                {
                    sent += n;
                    continue;
                }
                var left = deadline - Environment.TickCount64;
                if (left <= 0) throw new SocketException((int)SocketError.TimedOut);
                room[0] = new PollFd { Fd = fd, Events = PollOut };
                Poll(room, (int)left);
            }
        }
    }

    /// <summary>Waits up to <paramref name="timeoutMs"/> for any of <paramref name="fds"/>; false on a timeout (or a signal).</summary>
    public static unsafe bool Poll(Span<PollFd> fds, int timeoutMs)
    {
        fixed (PollFd* p = fds)
        {
            var n = poll(p, (nuint)fds.Length, timeoutMs);
            if (n >= 0) return n > 0;
            var errno = Marshal.GetLastPInvokeError();
            return errno == EIntr ? false : throw Error(errno);
        }
    }

    /// <summary>A non-blocking eventfd (<see cref="Wakeup"/>).</summary>
    public static int CreateEvent()
    {
        var fd = eventfd(0, EfdNonBlock | EfdCloexec);
        return fd >= 0 ? fd : throw Error(Marshal.GetLastPInvokeError());
    }

    public static unsafe void Signal(int fd)
    {
        ulong one = 1;
        _ = write(fd, &one, sizeof(ulong));   // a full counter (2^64 - 2 signals) cannot happen; a closed fd means no one waits
    }

    public static unsafe void Drain(int fd)
    {
        ulong count;
        _ = read(fd, &count, sizeof(ulong));
    }

    public static void Close(int fd) => _ = close(fd);

    /// <summary>
    /// Takes <paramref name="fd"/> out of every epoll set of this process that watches it — in practice .NET's socket
    /// engine, which registers a socket the first time an asynchronous call on it has to wait, and never lets it go.
    /// The engine then hears nothing more of it, so its later readiness changes (every packet the pump sends or
    /// receives) no longer wake the engine's thread and a thread-pool thread each. Only for a socket no .NET operation
    /// will wait on again: one would wait for an event that never comes. Returns how many sets let it go (0 where no
    /// engine watched it).
    /// </summary>
    public static int LeaveEpollSets(int fd)
    {
        var left = 0;
        foreach (var entry in new DirectoryInfo("/proc/self/fd").EnumerateFileSystemInfos())
        {
            if (!int.TryParse(entry.Name, out var candidate) || candidate == fd) continue;
            string? target;
            try { target = entry.LinkTarget; }
            catch (IOException) { continue; }   // closed meanwhile
            if (target != "anon_inode:[eventpoll]") continue;
            if (epoll_ctl(candidate, EpollCtlDel, fd, IntPtr.Zero) == 0) left++;
        }
        return left;
    }

    private const int EpollCtlDel = 2;

    [LibraryImport("libc", SetLastError = true)]
    private static partial int epoll_ctl(int epfd, int op, int fd, IntPtr evt);

    /// <summary>The <see cref="SocketException"/> .NET would throw for <paramref name="errno"/> (the ones a ring link meets).</summary>
    private static SocketException Error(int errno) => new((int)(errno switch
    {
        104 => SocketError.ConnectionReset,      // ECONNRESET
        32 => SocketError.Shutdown,              // EPIPE: we or the peer shut the connection down
        103 => SocketError.ConnectionAborted,    // ECONNABORTED
        110 => SocketError.TimedOut,             // ETIMEDOUT: TCP gave up retransmitting
        113 => SocketError.HostUnreachable,      // EHOSTUNREACH
        101 => SocketError.NetworkUnreachable,   // ENETUNREACH
        9 or 88 => SocketError.NotSocket,        // EBADF, ENOTSOCK: the socket was closed under the call
        _ => SocketError.SocketError,
    }));

    [LibraryImport("libc", SetLastError = true)]
    private static unsafe partial nint recv(int fd, byte* buffer, nuint length, int flags);

    [LibraryImport("libc", SetLastError = true)]
    private static unsafe partial nint send(int fd, byte* buffer, nuint length, int flags);

    [LibraryImport("libc", SetLastError = true)]
    private static unsafe partial int poll(PollFd* fds, nuint count, int timeoutMs);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int eventfd(uint initial, int flags);

    [LibraryImport("libc", SetLastError = true)]
    private static unsafe partial nint write(int fd, void* buffer, nuint length);

    [LibraryImport("libc", SetLastError = true)]
    private static unsafe partial nint read(int fd, void* buffer, nuint length);

    [LibraryImport("libc")]
    private static partial int close(int fd);
}

/// <summary>
/// An eventfd that wakes a thread polling it (<see cref="LinuxSockets.Poll"/>) from any other thread. Signalling after
/// <see cref="Dispose"/> does nothing, so a late signal cannot write into a descriptor the process has since reused; the
/// poller itself disposes it (or lets it be disposed only once it no longer polls).
/// </summary>
internal sealed class WakeEvent : IDisposable
{
    private readonly Lock _gate = new();
    private int _fd = LinuxSockets.CreateEvent();

    /// <summary>The descriptor to poll (-1 once disposed).</summary>
    public int Fd => _fd;

    public void Signal()
    {
        lock (_gate)
            if (_fd >= 0) LinuxSockets.Signal(_fd);
    }

    /// <summary>Clears pending signals.</summary>
    public void Drain()
    {
        lock (_gate)
            if (_fd >= 0) LinuxSockets.Drain(_fd);
    }

    public void Dispose()
    {
        lock (_gate)
        {
            if (_fd < 0) return;
            LinuxSockets.Close(_fd);
            _fd = -1;
        }
    }
}
