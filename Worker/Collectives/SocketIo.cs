using System.Net.Sockets;
using System.Runtime.CompilerServices;

namespace Pretrain.Worker.Collectives;

/// <summary>
/// Exact-length socket I/O. Pooled async builders and <see cref="Socket"/>'s ValueTask overloads
/// (which reuse one SocketAsyncEventArgs per direction) keep the hot path free of per-call garbage.
/// </summary>
internal static class SocketIo
{
    /// <summary>False when the peer closed the connection before <paramref name="buffer"/> was full.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public static async ValueTask<bool> ReceiveExactlyAsync(Socket socket, Memory<byte> buffer, CancellationToken ct)
    {
        while (buffer.Length > 0)
        {
            var n = await socket.ReceiveAsync(buffer, SocketFlags.None, ct);
            if (n == 0) return false;
            buffer = buffer[n..];
        }
        return true;
    }

    /// <summary>
    /// <see cref="ReceiveExactlyAsync(Socket, Memory{byte}, CancellationToken)"/> for a data segment, asking the kernel (SO_RCVLOWAT)
    /// not to report the socket readable before <see cref="LowWaterBytes"/> of it (or all that is left) arrived. Loopback
    /// delivers a segment in 64 KiB packets, and each readiness costs a wake-up of the socket engine and a thread-pool hop:
    /// with the mark, a 512 KiB segment takes two or three of them instead of up to eight (2 ranks: 1 MiB allreduce 0.69 →
    /// 0.52 ms, 16 MiB 8.4 → 7.7 ms on these machines). Never more than is left, so the call cannot wait for bytes the
    /// peer will not send; a closed or reset connection is readable whatever the mark. Small reads (handshakes, notices)
    /// leave the mark alone, and it is back at 1 when this returns: shared-memory links read their doorbells from the
    /// socket directly.
    /// </summary>
    public static ValueTask<bool> ReceiveSegmentAsync(Socket socket, Memory<byte> buffer, CancellationToken ct) =>
        buffer.Length < MarkedReceiveBytes || !OperatingSystem.IsLinux() ? ReceiveExactlyAsync(socket, buffer, ct) : ReceiveMarkedAsync(socket, buffer, ct);

    /// <summary>The receive low-water mark of data segments (<see cref="ReceiveSegmentAsync"/>).</summary>
    public const int LowWaterBytes = 256 << 10;

    private const int PacketBytes = 64 << 10;   // the loopback MTU: what arrives at once anyway

    /// <summary>Reads shorter than this leave the low-water mark at 1: two packets arrive about at once anyway.</summary>
    public const int MarkedReceiveBytes = 2 * PacketBytes;

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private static async ValueTask<bool> ReceiveMarkedAsync(Socket socket, Memory<byte> buffer, CancellationToken ct)
    {
        int mark = 1;
        try
        {
            while (buffer.Length > 0)
            {
                var want = Math.Min(buffer.Length, LowWaterBytes);
                if (want != mark) mark = SetLowWater(socket, want);
                var n = await socket.ReceiveAsync(buffer, SocketFlags.None, ct);
                if (n == 0) return false;
                buffer = buffer[n..];
            }
            return true;
        }
        finally
        {
            if (mark != 1) ResetLowWater(socket);
        }
    }

    /// <summary>Sets <paramref name="socket"/>'s receive low-water mark (SO_RCVLOWAT, Linux) and returns it.</summary>
    public static int SetLowWaterMark(Socket socket, int bytes) => SetLowWater(socket, bytes);

    private static int SetLowWater(Socket socket, int bytes)
    {
        Span<byte> value = stackalloc byte[sizeof(int)];
        System.Runtime.InteropServices.MemoryMarshal.Write(value, in bytes);   // an int in the host's order
        socket.SetRawSocketOption(SolSocket, SoRcvLowat, value);
        return bytes;
    }

    private static void ResetLowWater(Socket socket)
    {
        try { SetLowWater(socket, 1); }
        catch (Exception e) when (e is ObjectDisposedException or SocketException) { }   // the link failed; nothing reads it again
    }

    private const int SolSocket = 1, SoRcvLowat = 18;   // Linux <asm-generic/socket.h>

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public static async ValueTask SendAllAsync(Socket socket, ReadOnlyMemory<byte> buffer, CancellationToken ct)
    {
        while (buffer.Length > 0)
            buffer = buffer[await socket.SendAsync(buffer, SocketFlags.None, ct)..];
    }

    /// <summary>Ring sockets: no Nagle delay (segments are large, headers small and latency-bound).</summary>
    public static void Tune(Socket socket, int bufferBytes)
    {
        socket.NoDelay = true;
        if (bufferBytes <= 0) return;
        socket.SendBufferSize = bufferBytes;
        socket.ReceiveBufferSize = bufferBytes;
    }
}
