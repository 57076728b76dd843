using System.Net.Security;
using System.Net.Sockets;
using System.Runtime.CompilerServices;

namespace Pretrain.Worker.Collectives;

/// <summary>
/// One ring connection over TCP: exact-length sends and receives on a plain socket, or on TLS over it
/// (<see cref="DataPlaneTls"/>). The plain path stays the socket's own ValueTask calls (no stream in between on the hot
/// path). Sends from several threads (failure notices) are serialised by the caller's one-writer discipline, except
/// <see cref="SendNotice"/> and <see cref="SendDoorbell"/>, which may come from any thread and take a lock.
/// </summary>
internal sealed class RingLink : IRingLink
{
    /// <summary>The byte a shared-memory link's doorbell is (<see cref="SharedMemorySender"/>); a notice starts with 'P'.</summary>
    public const byte DoorbellByte = 0;

    private static readonly byte[] DoorbellBytes = [DoorbellByte];
    private readonly SslStream? _tls;
    private readonly Lock _notices = new();

    private RingLink(Socket socket, SslStream? tls) => (Socket, _tls) = (socket, tls);

    public static RingLink Plain(Socket socket) => new(socket, null);

    /// <summary>A link over <paramref name="tls"/>, which owns <paramref name="socket"/>.</summary>
    public static RingLink Encrypted(Socket socket, SslStream tls) => new(socket, tls);

    public Socket Socket { get; }
    public bool IsEncrypted => _tls is not null;
    public LinkTransport Transport => _tls is null ? LinkTransport.Tcp : LinkTransport.Tls;

    /// <summary>False when the peer closed the connection before <paramref name="buffer"/> was full.</summary>
    public ValueTask<bool> ReceiveExactlyAsync(Memory<byte> buffer, CancellationToken ct) =>
        _tls is null ? SocketIo.ReceiveSegmentAsync(Socket, buffer, ct) : ReadExactlyAsync(_tls, buffer, ct);

    /// <summary>Receives into <paramref name="scratch"/>, then adds: the bytes arrive in our memory only by a copy anyway.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<bool> ReceiveAddingAsync(Memory<byte> target, CollectiveOp kind, Memory<byte> scratch, CancellationToken ct)
    {
        var into = scratch[..target.Length];
        if (!await ReceiveExactlyAsync(into, ct)) return false;
        Reduction.AddInto(kind, target.Span, into.Span);
        return true;
    }

    public ValueTask SendAllAsync(ReadOnlyMemory<byte> buffer, CancellationToken ct) =>
        _tls is null ? SocketIo.SendAllAsync(Socket, buffer, ct) : _tls.WriteAsync(buffer, ct);

    /// <summary>A failure notice on the reverse direction, synchronously (it must be out before the link is closed).</summary>
    public void SendNotice(byte[] notice)
    {
        lock (_notices)
        {
            if (_tls is not null) _tls.Write(notice);
            else if (!_detached) Socket.Send(notice);
            else SendRaw(notice);
        }
    }

    /// <summary>A detached socket's send: our own bounded one (.NET's would wait through the socket engine, which no longer watches it).</summary>
    private void SendRaw(byte[] bytes)
    {
        var added = false;
        try
        {
            Socket.SafeHandle.DangerousAddRef(ref added);
            LinuxSockets.SendAll((int)Socket.SafeHandle.DangerousGetHandle(), bytes, NoticeTimeoutMs);
        }
        finally
        {
            if (added) Socket.SafeHandle.DangerousRelease();
        }
    }

    private const int NoticeTimeoutMs = 1000;   // a notice is a few hundred bytes on a direction that carries nothing else
    private bool _detached;

    /// <summary>
    /// Takes the socket out of .NET's socket engine (<see cref="LinuxSockets.LeaveEpollSets"/>) for a caller that does its
    /// I/O with system calls of its own (<see cref="RingCommunicator"/>'s pump); from then on this link's own calls are
    /// limited to <see cref="SendNotice"/> and <see cref="SendDoorbell"/> (which then send with our own calls) and <see cref="Dispose"/>.
    /// </summary>
    public void Detach()
    {
        _detached = true;
        LinuxSockets.LeaveEpollSets((int)Socket.SafeHandle.DangerousGetHandle());
    }

    /// <summary>
    /// One <see cref="DoorbellByte"/>, synchronously (a shared-memory link's "the counters moved"; plain links only).
    /// Under the notice lock, so a doorbell never lands inside a notice on the same direction.
    /// </summary>
    public void SendDoorbell()
    {
        lock (_notices)
        {
            if (_detached) SendRaw(DoorbellBytes);
            else Socket.Send(DoorbellBytes);
        }
    }

    // Stream's own exact-length read: fewer bytes than asked means the peer closed the connection. Pooled, as SocketIo's.
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private static async ValueTask<bool> ReadExactlyAsync(SslStream stream, Memory<byte> buffer, CancellationToken ct) =>
        await stream.ReadAtLeastAsync(buffer, buffer.Length, throwOnEndOfStream: false, ct) == buffer.Length;

    public void Dispose()
    {
        _tls?.Dispose();
        Socket.Dispose();
    }
}
