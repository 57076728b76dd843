using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using System.Security.Cryptography;
using Pretrain.Shared.Telemetry;

namespace Pretrain.Worker.Collectives;

/// <summary>
/// The worker process's one data-plane port. Accepts ring connections, reads their
/// <see cref="Handshake"/>, has them prove the generation's key (<see cref="RingAuthentication"/>) and hands each
/// proven socket to the <see cref="RingCommunicator"/> of that generation waiting for that sender rank. Connections
/// for an older generation than the newest one opened here are rejected as stale; for a generation not opened yet
/// they wait (bounded by <see cref="PendingWait"/>) and are then told to retry. A connection that sends garbage,
/// nothing, or a wrong proof is closed without taking a slot, logged with its address and counted in
/// <c>pretrain_rejected_connections_total{plane="data"}</c>; at most <see cref="MaxPendingHandshakes"/> are read at once.
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

    private sealed record Expected(int FromRank, int WorldSize, byte[] Key, bool RequireTls, TaskCompletionSource<RingLink> Socket);

    /// <summary>Handshakes read at once; more are closed unread. A ring has one inbound connection per generation, so
    /// 64 leaves room for retries and stale peers while a flood of strangers costs 64 small buffers at most.</summary>
    public const int MaxPendingHandshakes = 64;
    private int _pending;

    private readonly DataPlaneTlsOptions? _tls;

    /// <summary>Binds <paramref name="address"/>:<paramref name="port"/> (0 = any free port) and starts accepting.</summary>
    /// <param name="tls">This node's certificates: connections that open with a TLS handshake are served over TLS. Null: plain only.</param>
    public DataPlaneListener(IPAddress address, int port = 0, ILogger? logger = null, DataPlaneTlsOptions? tls = null)
    {
        _tls = tls;
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
    /// connection from <paramref name="fromRank"/> that proves <paramref name="key"/>; the task completes with the
    /// handed-over socket.</summary>
    internal Task<RingLink> Expect(long generation, int rank, int fromRank, int worldSize, byte[] key, bool requireTls = false)
    {
        if (requireTls && _tls is null) throw new InvalidOperationException("a TLS ring needs a listener with certificates");
        var tcs = new TaskCompletionSource<RingLink>(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_gate)
        {
            if (generation < _newestGeneration && !_expected.Keys.Any(k => k.Generation == generation))
                throw new InvalidOperationException($"generation {generation} is older than generation {_newestGeneration} already opened on this listener");
            if (!_expected.TryAdd((generation, rank), new Expected(fromRank, worldSize, key, requireTls, tcs)))
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
        if (Interlocked.Increment(ref _pending) > MaxPendingHandshakes)
        {
            Interlocked.Decrement(ref _pending);
            Reject(remote, "too_many_pending", $"more than {MaxPendingHandshakes} handshakes in progress");
            client.Dispose();
            return;
        }
        try
        {
            if (await HandshakeAsync(client, remote)) return;
        }
        catch (Exception) when (_stop.IsCancellationRequested) { }   // the listener is closing
        catch (Exception ex)
        {
            Reject(remote, "handshake_failed", ex is OperationCanceledException ? $"sent no complete handshake within {PendingWait.TotalSeconds:0.#} s" : ex.Message);
        }
        finally
        {
            Interlocked.Decrement(ref _pending);
        }
        client.Dispose();
    }

    /// <summary>One connection's handshake (<see cref="RingAuthentication"/>), over TLS when it opens with a TLS record;
    /// true when its link was handed over.</summary>
    private async Task<bool> HandshakeAsync(Socket client, string remote)
    {
        client.NoDelay = true;
        var link = await OpenAsync(client, remote);
        if (link is null) return false;
        try
        {
            if (await HandshakeAsync(link, remote)) return true;
        }
        catch
        {
            link.Dispose();
            throw;
        }
        link.Dispose();
        return false;
    }

    /// <summary>A plain link, or TLS when the first byte is a TLS handshake record (0x16; ours start with 'P').</summary>
    private async Task<RingLink?> OpenAsync(Socket client, string remote)
    {
        var first = new byte[1];
        using (var read = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token))
        {
            read.CancelAfter(PendingWait);
            if (await client.ReceiveAsync(first, SocketFlags.Peek, read.Token) == 0) throw new IOException("closed the connection before its handshake");
        }
        if (first[0] != TlsHandshakeRecord) return RingLink.Plain(client);
        if (_tls is null)
        {
            Reject(remote, "tls_unsupported", "opened with TLS, but this listener has no certificates (--tls-cert, --tls-ca)");
            return null;
        }
        using var bound = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
        bound.CancelAfter(PendingWait);
        try
        {
            return RingLink.Encrypted(client, await DataPlaneTls.AuthenticateAsServerAsync(client, _tls, bound.Token));
        }
        catch (System.Security.Authentication.AuthenticationException e)
        {
            Reject(remote, "bad_certificate", e.Message);
            return null;
        }
    }

    private const byte TlsHandshakeRecord = 0x16;

    private async Task<bool> HandshakeAsync(RingLink client, string remote)
    {
        var hello = new byte[RingAuthentication.HelloSize];
        await ReceiveBoundedAsync(client, hello);
        var (status, reason, hs, expected) = await DecideAsync(hello);
        if (status == HandshakeStatus.Accepted && expected!.RequireTls && !client.IsEncrypted)
            (status, reason) = (HandshakeStatus.TlsRequired, $"{hs}: this generation's ring is encrypted, the connection is not");
        var challenge = new byte[RingAuthentication.ChallengeSize];
        BitConverter.TryWriteBytes(challenge, (int)status);
        if (status != HandshakeStatus.Accepted)
        {
            await client.SendAllAsync(challenge, _stop.Token);
            if (status != HandshakeStatus.NotReady) Reject(remote, status.ToString(), reason);
            return false;
        }
        var key = expected!.Key;
        var nonce = RandomNumberGenerator.GetBytes(RingAuthentication.NonceSize);
        nonce.CopyTo(challenge, 4);
        RingAuthentication.ListenerProof(key, hello, nonce).CopyTo(challenge, 4 + RingAuthentication.NonceSize);
        await client.SendAllAsync(challenge, _stop.Token);
        var proof = new byte[RingAuthentication.ProofSize];
        await ReceiveBoundedAsync(client, proof);
        var verdict = new byte[RingAuthentication.VerdictSize];
        if (!Pretrain.Shared.Security.Hmac.Matches(proof, RingAuthentication.ConnectorProof(key, hello, nonce)))
        {
            BitConverter.TryWriteBytes(verdict, (int)HandshakeStatus.Unauthenticated);
            await client.SendAllAsync(verdict, _stop.Token);
            Reject(remote, "unauthenticated", $"{hs} did not prove generation {hs!.Value.Generation}'s key");
            return false;
        }
        if (!Claim(hs!.Value, client))
        {
            BitConverter.TryWriteBytes(verdict, (int)HandshakeStatus.Mismatch);
            await client.SendAllAsync(verdict, _stop.Token);
            Reject(remote, "Mismatch", $"{hs}: rank {hs.Value.TargetRank}'s connection is taken already");
            return false;
        }
        BitConverter.TryWriteBytes(verdict, (int)HandshakeStatus.Accepted);
        await client.SendAllAsync(verdict, _stop.Token);
        return true;
    }

    /// <summary>Reads exactly <paramref name="buffer"/> within <see cref="PendingWait"/>.</summary>
    private async Task ReceiveBoundedAsync(RingLink client, byte[] buffer)
    {
        using var read = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
        read.CancelAfter(PendingWait);
        if (!await client.ReceiveExactlyAsync(buffer, read.Token)) throw new IOException("closed the connection during its handshake");
    }

    private void Reject(string remote, string reason, string detail)
    {
        Interlocked.Increment(ref _rejected);
        PretrainMetrics.Rejected("data", ToSnakeCase(reason));
        _log.LogWarning("data plane rejected connection from {Remote}: {Reason}: {Detail}", remote, reason, detail);
    }

    private static string ToSnakeCase(string reason) =>
        string.Concat(reason.Select((c, i) => char.IsUpper(c) ? (i > 0 ? "_" : "") + char.ToLowerInvariant(c) : c.ToString()));

    private async Task<(HandshakeStatus, string, Handshake?, Expected?)> DecideAsync(byte[] buffer)
    {
        if (Handshake.TryRead(buffer) is not { } hs)
            return (HandshakeStatus.BadProtocol, "bad magic or protocol version", null, null);
        var deadline = Environment.TickCount64 + (long)PendingWait.TotalMilliseconds;
        while (true)
        {
            lock (_gate)
            {
                if (_expected.TryGetValue((hs.Generation, hs.TargetRank), out var e))
                {
                    if (e.FromRank != hs.SenderRank || e.WorldSize != hs.WorldSize)
                        return (HandshakeStatus.Mismatch, $"{hs} but rank {hs.TargetRank} expects rank {e.FromRank} of {e.WorldSize}", hs, null);
                    return e.Socket.Task.IsCompleted
                        ? (HandshakeStatus.Mismatch, $"{hs}: duplicate connection", hs, null)
                        : (HandshakeStatus.Accepted, "", hs, e);
                }
                if (hs.Generation < _newestGeneration)
                    return (HandshakeStatus.StaleGeneration, $"{hs}: generation {hs.Generation} is older than {_newestGeneration}", hs, null);
            }
            // A generation not opened yet: the peer got its rendezvous first. Wait briefly, bounded.
            if (Environment.TickCount64 >= deadline)
                return (HandshakeStatus.NotReady, $"{hs}: generation not opened within {PendingWait.TotalSeconds:0.#} s", hs, null);
            await Task.Delay(20, _stop.Token);
        }
    }

    private bool Claim(Handshake hs, RingLink client)
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
