using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using System.Security.Cryptography;

namespace Pretrain.Worker.Collectives;

/// <summary>
/// Collectives over a ring for one rendezvous generation: rank r sends to (r+1)%n and receives
/// from (r-1)%n, each link one TCP connection — whose data goes through shared memory when both ends
/// are on one host (<see cref="LinkNegotiation"/>). Create one per generation with the peers the coordinator
/// assigned, then <see cref="ConnectAsync"/>. Calls must be issued in the same order on every rank,
/// one at a time. After any failure the communicator is unusable: dispose it and build the next
/// generation's.
/// </summary>
public sealed partial class RingCommunicator : ICollectives
{
    private readonly DataPlaneListener _listener;
    private readonly RingPeer[] _peers;
    private readonly CollectiveOptions _options;
    private readonly ILogger _log;
    private readonly Task<RingLink>? _accepted;
    private readonly byte[] _key;
    private IRingLink? _toNext;     // data out; failure notices from next come back on it
    private IRingLink? _fromPrev;   // data in; failure notices go back to prev on it
    private string _toNextHow = "", _fromPrevHow = "";   // how each link carries data, for the log
    private int _segment;           // the pipeline segment, chosen once the links are known
    private volatile bool _connected, _disposed;

    /// <param name="listener">This process's data-plane listener (it accepts the previous rank's connection).</param>
    /// <param name="generation">Rendezvous generation; carried on the wire and checked by every peer.</param>
    /// <param name="rank">This process's rank.</param>
    /// <param name="peers">Every member including this one, one per rank 0..n-1 (any order).</param>
    /// <param name="key">The generation's data-plane key (<c>JobSecret.GenerationKey</c>): both ends of every ring
    /// connection prove it (<see cref="RingAuthentication"/>).</param>
    public RingCommunicator(DataPlaneListener listener, long generation, int rank, IReadOnlyList<RingPeer> peers, byte[] key,
        CollectiveOptions? options = null, ILogger? logger = null)
    {
        if (key is not { Length: >= 16 }) throw new ArgumentException("a generation key of at least 16 bytes is required", nameof(key));
        _key = key;
        _options = options ?? new CollectiveOptions();
        _options.Validate();
        _peers = peers.OrderBy(p => p.Rank).ToArray();
        for (var i = 0; i < _peers.Length; i++)
            if (_peers[i].Rank != i) throw new ArgumentException($"peers must hold ranks 0..{_peers.Length - 1} once each", nameof(peers));
        if ((uint)rank >= (uint)_peers.Length) throw new ArgumentOutOfRangeException(nameof(rank), rank, $"world size is {_peers.Length}");
        (_listener, Generation, Rank, _log) = (listener, generation, rank, logger ?? NullLogger.Instance);
        WorldSize = _peers.Length;
        _scratch = GC.AllocateUninitializedArray<byte>(_options.SegmentBytes, pinned: true);
        _passes = new RingPass[Math.Max(1, 2 * WorldSize - 2)];
        if (WorldSize > 1) _accepted = listener.Expect(generation, rank, Prev.Rank, WorldSize, key, requireTls: _options.Tls is not null);
    }

    public long Generation { get; }
    public int Rank { get; }
    public int WorldSize { get; }

    /// <summary>How data goes to the next rank (known once connected).</summary>
    public LinkTransport SendTransport => _toNext?.Transport ?? LinkTransport.None;

    /// <summary>How data comes from the previous rank (known once connected).</summary>
    public LinkTransport ReceiveTransport => _fromPrev?.Transport ?? LinkTransport.None;

    /// <summary>The failure that ended this communicator, or null while it is healthy.</summary>
    public string? FailureReason => _failure is { } f ? Describe("communicator", f) : null;

    private RingPeer Next => _peers[(Rank + 1) % WorldSize];
    private RingPeer Prev => _peers[(Rank + WorldSize - 1) % WorldSize];

    /// <summary>
    /// Connects to the next rank (retrying until <see cref="CollectiveOptions.Timeout"/>, since peers
    /// start at different times) and waits for the previous rank's connection; on each, the two ends then
    /// agree whether its data goes through shared memory. World size 1: no-op.
    /// </summary>
    public async Task ConnectAsync(CancellationToken ct = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_connected || WorldSize == 1) { _connected = true; return; }
        using var bound = CancellationTokenSource.CreateLinkedTokenSource(ct, _abort.Token);
        bound.CancelAfter(_options.Timeout);
        var accepting = AcceptPrevAsync(bound.Token);
        var connecting = ConnectNextAsync(bound.Token);
        try
        {
            await await Task.WhenAny(accepting, connecting);  // a refused handshake fails at once
            (_fromPrev, _fromPrevHow) = await accepting;
            (_toNext, _toNextHow) = await connecting;
        }
        catch (Exception ex)
        {
            // A link that is made after all (or was made, while the other failed) holds a socket and maybe a mapping.
            if (_fromPrev is null) DisposeWhenMade(accepting);
            if (_toNext is null) DisposeWhenMade(connecting);
            if (ex is not (OperationCanceledException or SocketException) || ct.IsCancellationRequested) throw;
            var within = $"within {_options.Timeout.TotalSeconds:0.#} s";
            var (peer, what) = !_accepted!.IsCompletedSuccessfully ? (Prev, $"did not connect {within}")
                : !accepting.IsCompletedSuccessfully ? (Prev, $"connected but did not finish the transport negotiation {within}")
                : (Next, $"could not connect {within}: {_connectProblem}");
            throw FailCall("connect", new Failure(peer.Rank, what, Definitive: true));
        }
        // Both links shared memory: no system call per segment, so finer segments (more overlap) cost little.
        _segment = _toNext.Transport == LinkTransport.SharedMemory && _fromPrev.Transport == LinkTransport.SharedMemory
            ? Math.Min(_options.SharedMemorySegmentBytes, _options.SegmentBytes)
            : _options.SegmentBytes;
        _pump = MakePump(_toNext, _fromPrev);
        if (_pump is { } pump) _abort.Token.Register(pump.Wake);
        _connected = true;
        if (_pump is not null) StartPump(_pump);
        if (_pump is TcpPump tcp) StartWatchingNext(tcp.ToNext);
        else _ = WatchNextAsync(_toNext);
        _watchdog = new Timer(static s => ((RingCommunicator)s!).CheckProgress(), this, WatchdogPeriod, WatchdogPeriod);
        _log.LogInformation("generation {Generation} rank {Rank}: ring connected, from rank {Prev} over {From}, to rank {Next} over {To}",
            Generation, Rank, Prev.Rank, _fromPrevHow, Next.Rank, _toNextHow);
    }

    private static void DisposeWhenMade(Task<(IRingLink Link, string How)> making) =>
        _ = making.ContinueWith(static t => t.Result.Link.Dispose(), CancellationToken.None,
            TaskContinuationOptions.OnlyOnRanToCompletion | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);

    private string _connectProblem = "no attempt";

    /// <summary>The previous rank's connection, once it proved the key, and the transport agreed on it (we receive).</summary>
    private async Task<(IRingLink Link, string How)> AcceptPrevAsync(CancellationToken ct)
    {
        var link = await _accepted!.WaitAsync(ct);
        SocketIo.Tune(link.Socket, _options.SocketBufferBytes);
        return await NegotiateAsync(link, Prev, listening: true, ct);
    }

    /// <summary>The connection to the next rank, proven, and the transport agreed on it (we send).</summary>
    private async Task<(IRingLink Link, string How)> ConnectNextAsync(CancellationToken ct)
    {
        var link = await HandshakeNextAsync(ct);
        SocketIo.Tune(link.Socket, _options.SocketBufferBytes);
        _connectProblem = "connected, but the transport negotiation did not finish";
        return await NegotiateAsync(link, Next, listening: false, ct);
    }

    /// <summary>
    /// <see cref="LinkNegotiation"/> on a proven link. A peer that breaks it off (closes, sends garbage) fails the connect
    /// at once, naming it: the handshake is done, so there is nothing to retry.
    /// </summary>
    private async Task<(IRingLink Link, string How)> NegotiateAsync(RingLink link, RingPeer peer, bool listening, CancellationToken ct)
    {
        try
        {
            return listening
                ? await LinkNegotiation.ListenerAsync(link, new LinkNegotiation.Ends(Generation, Prev.Rank, Rank), _options, _log, ct)
                : await LinkNegotiation.ConnectorAsync(link, new LinkNegotiation.Ends(Generation, Rank, Next.Rank), _options, _log, ct);
        }
        catch (Exception e) when (e is SocketException or IOException or InvalidDataException && !ct.IsCancellationRequested)
        {
            link.Dispose();
            throw FailCall("connect", new Failure(peer.Rank, $"broke off the transport negotiation: {(e is SocketException s ? Describe(s) : e.Message)}", Definitive: true));
        }
        catch
        {
            link.Dispose();
            throw;
        }
    }

    private async Task<RingLink> HandshakeNextAsync(CancellationToken ct)
    {
        var hello = new byte[RingAuthentication.HelloSize];
        new Handshake(Generation, Rank, Next.Rank, WorldSize).Write(hello);
        var challenge = new byte[RingAuthentication.ChallengeSize];
        var verdict = new byte[RingAuthentication.VerdictSize];
        while (true)
        {
            RandomNumberGenerator.Fill(hello.AsSpan(Handshake.Size));    // a fresh nonce per attempt
            var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
            RingLink? link = null;
            try
            {
                await socket.ConnectAsync(Next.Host, Next.Port, ct);
                socket.NoDelay = true;
                link = await OpenAsync(socket, ct);
                await link.SendAllAsync(hello, ct);
                if (!await link.ReceiveExactlyAsync(challenge.AsMemory(0, 4), ct))
                    throw new SocketException((int)SocketError.ConnectionReset);
                var status = (HandshakeStatus)BitConverter.ToInt32(challenge);
                if (status == HandshakeStatus.Accepted) return await ProveAsync(link, hello, challenge, verdict, ct);
                _connectProblem = $"handshake answered {status}";
                if (status != HandshakeStatus.NotReady)
                    throw FailCall("connect", new Failure(Next.Rank, $"refused the connection: {status}", Definitive: true));
            }
            catch (Exception ex) when (ex is SocketException or IOException && !ct.IsCancellationRequested)
            {
                _connectProblem = ex is SocketException se ? Describe(se) : ex.Message;
            }
            catch
            {
                link?.Dispose();
                socket.Dispose();
                throw;
            }
            link?.Dispose();
            socket.Dispose();
            await Task.Delay(50, ct);  // peers start within seconds of each other; 50 ms keeps retries cheap
        }
    }

    /// <summary>The link over a connected socket: TLS when this generation's ring is encrypted (a refused certificate is definitive).</summary>
    private async Task<RingLink> OpenAsync(Socket socket, CancellationToken ct)
    {
        if (_options.Tls is not { } tls) return RingLink.Plain(socket);
        try
        {
            return RingLink.Encrypted(socket, await DataPlaneTls.AuthenticateAsClientAsync(socket, tls, ct));
        }
        catch (System.Security.Authentication.AuthenticationException e)
        {
            throw FailCall("connect", new Failure(Next.Rank, e.Message, Definitive: true));
        }
    }

    /// <summary>
    /// The rest of the handshake once the next rank took the hello: check its proof of the generation key (a listener
    /// that cannot prove it is not our peer: another job's process on that address, or a stranger), send ours, and take
    /// its verdict. A wrong key on either side is definitive, not retried.
    /// </summary>
    private async Task<RingLink> ProveAsync(RingLink link, byte[] hello, byte[] challenge, byte[] verdict, CancellationToken ct)
    {
        if (!await link.ReceiveExactlyAsync(challenge.AsMemory(4), ct)) throw new SocketException((int)SocketError.ConnectionReset);
        if (!Pretrain.Shared.Security.Hmac.Matches(challenge.AsSpan(4 + RingAuthentication.NonceSize),
                RingAuthentication.ListenerProof(_key, hello, challenge.AsSpan(4, RingAuthentication.NonceSize))))
            throw FailCall("connect", new Failure(Next.Rank, $"could not prove generation {Generation}'s key: the process at {Next.Host}:{Next.Port} is not this job's rank {Next.Rank}", Definitive: true));
        await link.SendAllAsync(RingAuthentication.ConnectorProof(_key, hello, challenge.AsSpan(4, RingAuthentication.NonceSize)), ct);
        if (!await link.ReceiveExactlyAsync(verdict, ct)) throw new SocketException((int)SocketError.ConnectionReset);
        var status = (HandshakeStatus)BitConverter.ToInt32(verdict);
        if (status == HandshakeStatus.Accepted) return link;
        throw FailCall("connect", new Failure(Next.Rank, $"refused the connection after its proof: {status}", Definitive: true));
    }

    private void ThrowIfUnusable(string op)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_departed is { } left) Fail(left);  // also tells the previous rank, which may already wait on us
        if (_failure is { } f) throw new CollectiveException(Describe(op, f), Generation, f.PeerRank, PeerName(f.PeerRank)) { PeerTimedOut = f.TimedOut };
        if (!_connected) throw new InvalidOperationException($"{op}: call ConnectAsync first");
    }

    /// <summary>Closes the sockets at once. Idle, it first tells the previous rank it is leaving (so a
    /// peer still draining its last call's data is not failed); mid-call, it tells it the call is dead.</summary>
    public ValueTask DisposeAsync()
    {
        if (_disposed) return ValueTask.CompletedTask;
        if (Volatile.Read(ref _busy) == 1)
            Fail(new Failure(Rank, "communicator disposed during the collective", Definitive: true));
        else if (_failure == null)
            SendNotice(new Failure(WireFormat.LeftRank, "left the generation", Definitive: true));
        CloseAbruptly();
        return ValueTask.CompletedTask;
    }

    /// <summary>What a crash looks like to the peers: the sockets close, nothing is said.</summary>
    internal void CloseAbruptly()
    {
        _disposed = true;
        _watchdog?.Dispose();
        _watchStop.Cancel();
        _abort.Cancel();
        _progress.Fault(new ObjectDisposedException(nameof(RingCommunicator)));
        _toNext?.Dispose();
        _fromPrev?.Dispose();
        _pump?.Dispose();
        if (_pump is not null) StopPump();
        _listener.Release(Generation, Rank);
        // The accepted socket, if no link took it (or under the link that did: disposing a socket twice is harmless).
        if (_accepted is { IsCompletedSuccessfully: true } a) a.Result.Dispose();
    }
}
