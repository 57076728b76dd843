using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Pretrain.Worker.Collectives;

/// <summary>
/// The worker process's one data-plane port. Accepts ring connections, reads their
/// <see cref="Handshake"/> and hands each socket to the <see cref="RingCommunicator"/> of that
/// generation waiting for that sender rank. Connections for an older generation than the newest one
/// opened here are rejected as stale; for a generation not opened yet they wait (bounded by
/// <see cref="PendingWait"/>) and are then told to retry.
/// </summary>
public sealed class DataPlaneListener : IDisposable
{
    private readonly Socket _socket;
    private readonly ILogger _log;
    private readonly CancellationTokenSource _stop = new();
    private readonly Lock _gate = new();
    // (generation, receiving rank) -> the socket that rank waits for from its previous rank.
    private readonly Dictionary<(long Generation, int Rank), Expected> _expected = new();
    private long _newestGeneration = long.MinValue;

    private sealed record Expected(int FromRank, int WorldSize, TaskCompletionSource<Socket> Socket);

    /// <summary>Binds <paramref name="address"/>:<paramref name="port"/> (0 = any free port) and starts accepting.</summary>
    public DataPlaneListener(IPAddress address, int port = 0, ILogger? logger = null)
    {
        _log = logger ?? NullLogger.Instance;
        _socket = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        _socket.Bind(new IPEndPoint(address, port));
        _socket.Listen(64);
        EndPoint = (IPEndPoint)_socket.LocalEndPoint!;
        _ = AcceptLoopAsync();
    }

    public IPEndPoint EndPoint { get; }
    public int Port => EndPoint.Port;

    /// <summary>How long a connection for a generation not opened yet may wait before "not ready". 2 s:
    /// rendezvous hands every worker its generation within milliseconds; the sender retries anyway.</summary>
    public TimeSpan PendingWait { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>Handshakes rejected so far (stale, mismatched, garbage), for tests and diagnostics.</summary>
    public int Rejected => Volatile.Read(ref _rejected);
    private int _rejected;

    /// <summary>Registers that <paramref name="rank"/> of <paramref name="generation"/> waits for a
    /// connection from <paramref name="fromRank"/>; the task completes with the handed-over socket.</summary>
    internal Task<Socket> Expect(long generation, int rank, int fromRank, int worldSize)
    {
        var tcs = new TaskCompletionSource<Socket>(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_gate)
        {
            if (generation < _newestGeneration && !_expected.Keys.Any(k => k.Generation == generation))
                throw new InvalidOperationException($"generation {generation} is older than generation {_newestGeneration} already opened on this listener");
            if (!_expected.TryAdd((generation, rank), new Expected(fromRank, worldSize, tcs)))
                throw new InvalidOperationException($"rank {rank} of generation {generation} is already open on this listener");
            _newestGeneration = Math.Max(_newestGeneration, generation);
        }
        return tcs.Task;
    }

    /// <summary>Forgets the registration of a disposed communicator (closing a socket never claimed).</summary>
    internal void Release(long generation, int rank)
    {
        Expected? e;
        lock (_gate) _expected.Remove((generation, rank), out e);
        if (e != null && e.Socket.Task.IsCompletedSuccessfully) return;
        e?.Socket.TrySetCanceled();
    }

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket client;
            try { client = await _socket.AcceptAsync(_stop.Token); }
            catch (Exception) when (_stop.IsCancellationRequested) { return; }
            catch (SocketException ex) { _log.LogWarning("data plane accept failed: {Error}", ex.SocketErrorCode); continue; }
            _ = HandleAsync(client);
        }
    }

    private async Task HandleAsync(Socket client)
    {
        var remote = client.RemoteEndPoint?.ToString() ?? "?";
        try
        {
            client.NoDelay = true;
            var buffer = new byte[Handshake.Size];
            using (var read = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token))
            {
                read.CancelAfter(PendingWait);
                if (!await SocketIo.ReceiveExactlyAsync(client, buffer, read.Token)) throw new IOException("closed before its handshake");
            }
            var (status, reason, hs) = await DecideAsync(buffer);
            var reply = new byte[4];
            BitConverter.TryWriteBytes(reply, (int)status);
            await client.SendAsync(reply, SocketFlags.None, _stop.Token);
            if (status == HandshakeStatus.Accepted && Claim(hs!.Value, client)) return;
            if (status != HandshakeStatus.Accepted)
            {
                Interlocked.Increment(ref _rejected);
                _log.LogWarning("data plane rejected connection from {Remote}: {Status}: {Reason}", remote, status, reason);
            }
        }
        catch (Exception ex)
        {
            _log.LogWarning("data plane handshake from {Remote} failed: {Error}", remote, ex.Message);
        }
        client.Dispose();
    }

    private async Task<(HandshakeStatus, string, Handshake?)> DecideAsync(byte[] buffer)
    {
        if (Handshake.TryRead(buffer) is not { } hs)
            return (HandshakeStatus.BadProtocol, "bad magic or protocol version", null);
        var deadline = Environment.TickCount64 + (long)PendingWait.TotalMilliseconds;
        while (true)
        {
            lock (_gate)
            {
                if (_expected.TryGetValue((hs.Generation, hs.TargetRank), out var e))
                {
                    if (e.FromRank != hs.SenderRank || e.WorldSize != hs.WorldSize)
                        return (HandshakeStatus.Mismatch, $"{hs} but rank {hs.TargetRank} expects rank {e.FromRank} of {e.WorldSize}", hs);
                    return e.Socket.Task.IsCompleted
                        ? (HandshakeStatus.Mismatch, $"{hs}: duplicate connection", hs)
                        : (HandshakeStatus.Accepted, "", hs);
                }
                if (hs.Generation < _newestGeneration)
                    return (HandshakeStatus.StaleGeneration, $"{hs}: generation {hs.Generation} is older than {_newestGeneration}", hs);
            }
            // A generation not opened yet: the peer got its rendezvous first. Wait briefly, bounded.
            if (Environment.TickCount64 >= deadline)
                return (HandshakeStatus.NotReady, $"{hs}: generation not opened within {PendingWait.TotalSeconds:0.#} s", hs);
            await Task.Delay(20, _stop.Token);
        }
    }

    private bool Claim(Handshake hs, Socket client)
    {
        lock (_gate)
            return _expected.TryGetValue((hs.Generation, hs.TargetRank), out var e) && e.Socket.TrySetResult(client);
    }

    public void Dispose()
    {
        _stop.Cancel();
        _socket.Dispose();
        lock (_gate)
        {
            foreach (var e in _expected.Values) e.Socket.TrySetCanceled();
            _expected.Clear();
        }
    }
}
