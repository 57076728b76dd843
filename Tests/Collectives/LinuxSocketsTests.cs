using System.Net;
using System.Net.Sockets;
using Pretrain.Worker.Collectives;
using Xunit;

namespace Pretrain.Tests.Collectives;

/// <summary>
/// The TCP pump's footing: a socket on which a .NET asynchronous call has waited sits in the socket engine's epoll set until
/// <see cref="LinuxSockets.LeaveEpollSets"/> takes it out, and our own non-blocking calls then still move its bytes. If a
/// .NET release stopped registering sockets this way, the first assertion says so (the pump would then run slower, not wrong).
/// </summary>
public sealed class LinuxSocketsTests
{
    [Fact]
    public async Task A_socket_an_async_call_waited_on_leaves_the_engines_epoll_set_once_and_still_carries_data()
    {
        if (!OperatingSystem.IsLinux()) return;
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await client.ConnectAsync(listener.LocalEndPoint!);
        using var server = await listener.AcceptAsync();
        var waiting = server.ReceiveAsync(new byte[1]);   // nothing there yet: the receive waits, so the engine takes the socket
        await Task.Delay(50);
        await client.SendAsync(new byte[] { 1 });
        Assert.Equal(1, await waiting);

        var fd = (int)server.SafeHandle.DangerousGetHandle();
        Assert.Equal(1, LinuxSockets.LeaveEpollSets(fd));
        Assert.Equal(0, LinuxSockets.LeaveEpollSets(fd));

        await client.SendAsync(new byte[] { 2, 3, 4 });
        var into = new byte[3];
        var got = 0;
        Span<LinuxSockets.PollFd> readable = stackalloc LinuxSockets.PollFd[1];
        for (var deadline = Environment.TickCount64 + 5000; got < 3 && Environment.TickCount64 < deadline;)
        {
            var n = Receive(fd, into, got);
            if (n > 0) got += n;
            else
            {
                readable[0] = new LinuxSockets.PollFd { Fd = fd, Events = LinuxSockets.PollIn };
                LinuxSockets.Poll(readable, 1000);
            }
        }
        Assert.Equal(new byte[] { 2, 3, 4 }, into);
    }

    private static unsafe int Receive(int fd, byte[] into, int offset)
    {
        fixed (byte* p = into) return LinuxSockets.Receive(fd, p + offset, into.Length - offset);
    }
}
