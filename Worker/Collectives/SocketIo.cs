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
