using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Logging;
using Pretrain.Shared.Telemetry;

namespace Pretrain.Worker.Collectives;

// Failure detection and reporting. Three sources: a data link breaks (EOF, reset), the watchdog sees
// no progress for Timeout, or the next rank reports a failure on the reverse channel. A broken link to
// the previous rank is only a *suspect*: that rank may be a survivor that failed first and closed, so
// the real culprit is awaited for FailureGrace in a notice coming backwards round the ring.
public sealed partial class RingCommunicator
{
    /// <param name="PeerRank">The rank blamed (-1: none, e.g. this rank was canceled).</param>
    /// <param name="Definitive">False while only a neighbour's link broke and a notice may still name the cause.</param>
    /// <param name="ReportedBy">The rank whose notice told us, or -1 when seen first-hand.</param>
    /// <param name="TimedOut">The blame rests on silence (the watchdog), not on a closed link: the blamed peer may be a
    /// live rank that waits, like us, on the one that froze. The coordinator then counts it lost only if it does not report.</param>
    private sealed record Failure(int PeerRank, string What, bool Definitive, int ReportedBy = -1, bool TimedOut = false);

    private readonly Lock _failureGate = new();
    private readonly CancellationTokenSource _abort = new();      // cancels in-flight data I/O on failure
    private readonly CancellationTokenSource _watchStop = new();  // stops the reverse-channel watcher on dispose
    private readonly TaskCompletionSource _definitive = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private volatile Failure? _failure;
    private volatile Failure? _departed;  // the next rank left in good order; no call may start
    private Timer? _watchdog;
    private long _lastProgress;  // Environment.TickCount64 of the last completed socket operation
    private int _busy;           // 1 while a collective is in flight

    /// <summary>A collective is in flight on this rank (for tests that must act while one waits).</summary>
    internal bool InCall => Volatile.Read(ref _busy) == 1;
    private int _counted;        // CollectiveFailuresTotal counts each communicator once
    private int _slowLogged;     // the "slow, not dead" warning is logged once per communicator

    private TimeSpan WatchdogPeriod => TimeSpan.FromMilliseconds(Math.Clamp(_options.Timeout.TotalMilliseconds / 8, 10, 1000));

    private void Touch() => Volatile.Write(ref _lastProgress, Environment.TickCount64);

    /// <summary>Records a failure (a definitive one overrides a suspect), aborts in-flight I/O, and
    /// passes a definitive cause on to the previous rank.</summary>
    private void Fail(Failure failure)
    {
        bool first;
        lock (_failureGate)
        {
            var current = _failure;
            if (current is { Definitive: true } || (current != null && !failure.Definitive)) return;
            first = current == null;
            _failure = failure;
        }
        if (first)
        {
            _abort.Cancel();
            _progress.Fault(new OperationCanceledException("collective aborted"));
        }
        if (!failure.Definitive) return;
        _definitive.TrySetResult();
        SendNotice(failure);  // even to a blamed prev: a desynced or stalled one is alive and should know
    }

    /// <summary>Tells the previous rank, on the reverse direction of its link, which rank failed and how.
    /// Ordered before any close of that socket, so the previous rank reads it before an EOF.</summary>
    private void SendNotice(Failure failure)
    {
        if (_fromPrev is not { } link || _disposed) return;
        try { link.SendNotice(WireFormat.EncodeNotice(failure.PeerRank, failure.What, failure.TimedOut)); }
        catch (Exception ex) when (ex is SocketException or IOException or ObjectDisposedException or NotSupportedException or InvalidOperationException)
        { /* prev is gone too; its own neighbours report it */ }
    }

    private async Task WatchNextAsync(IRingLink toNext)
    {
        var header = new byte[WireFormat.NoticeHeaderSize];
        try
        {
            while (true)
            {
                var closed = !await toNext.ReceiveExactlyAsync(header, _watchStop.Token);
                var text = closed ? [] : await ReadNoticeTextAsync(toNext, header);
                if (!await OnNoticeAsync(header, closed, text)) return;
            }
        }
        catch (Exception ex) { OnWatchError(ex); }
    }

    /// <summary>The notice's text, or null when its header is garbage or the connection closed within the text.</summary>
    private async Task<byte[]?> ReadNoticeTextAsync(IRingLink toNext, byte[] header)
    {
        if (WireFormat.ReadNoticeHeader(header, out _, out var length, out _) is not null) return null;
        var text = new byte[length];
        return await toNext.ReceiveExactlyAsync(text, _watchStop.Token) ? text : null;
    }

    /// <summary>
    /// Acts on one notice from next (or on the connection's end, <paramref name="closed"/>): false when watching is over.
    /// <paramref name="text"/> is null when the header is garbage or the text was cut off by a close.
    /// </summary>
    private async Task<bool> OnNoticeAsync(byte[] header, bool closed, byte[]? text)
    {
        if (closed)
        {
            Fail(new Failure(Next.Rank, "connection closed by peer", Definitive: true));
            return false;
        }
        if (WireFormat.ReadNoticeHeader(header, out var failed, out _, out var timedOut) is { } garbage)
        {
            Fail(new Failure(Next.Rank, $"sent garbage on the notice channel: {garbage}", Definitive: true));
            return false;
        }
        if (failed == WireFormat.LeftRank)
        {
            await OnNextLeftAsync();
            return false;
        }
        Fail(new Failure(failed, Encoding.UTF8.GetString(text ?? []), Definitive: true, ReportedBy: Next.Rank, TimedOut: timedOut));
        return text is not null;
    }

    private void OnWatchError(Exception ex)
    {
        if (_watchStop.IsCancellationRequested) return;
        switch (ex)
        {
            case SocketException s: Fail(new Failure(Next.Rank, Describe(s), Definitive: true)); break;
            case IOException io: Fail(new Failure(Next.Rank, io.InnerException is SocketException inner ? Describe(inner) : io.Message, Definitive: true)); break;   // TLS
            case ObjectDisposedException or OperationCanceledException: break;
            default: System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(ex); break;
        }
    }

    /// <summary>
    /// The next rank disposed its communicator while idle. At the end of a job it may finish the last
    /// call before this rank has drained it (its data is still in flight to us), so that is fine once
    /// our own sends are done; only a rank that still has data for it fails. Our last send returns a
    /// moment after the data left (into the socket or the shared ring), and the loop notes it only when its
    /// continuation runs, which a loaded machine can delay by far more than a failure grace: so wait up to
    /// the timeout. A rank that really still has data for the departed one does not wait that long: its
    /// send fails on the closed connection (or on the ring's closed doorbell) and ends the call first.
    /// </summary>
    private async Task OnNextLeftAsync()
    {
        var left = new Failure(Next.Rank, "left the generation (its communicator was disposed)", Definitive: true);
        var deadline = Environment.TickCount64 + (long)_options.Timeout.TotalMilliseconds;
        while (Volatile.Read(ref _busy) == 1 && !_sendDone && Environment.TickCount64 < deadline)
            await Task.Delay(5);
        if (Volatile.Read(ref _busy) == 1 && _sendDone) _departed = left;  // the call in flight may finish; no other starts
        else Fail(left);
    }

    /// <summary>Timer tick: a collective that moved no byte for Timeout fails, blaming the peer it waits on.</summary>
    private void CheckProgress()
    {
        if (Volatile.Read(ref _busy) == 0 || _failure != null) return;
        var idle = Environment.TickCount64 - Volatile.Read(ref _lastProgress);
        if (idle < _options.Timeout.TotalMilliseconds) return;
        var peer = _receiveDone ? Next : Prev;
        if (idle < _options.Timeout.TotalMilliseconds * _options.SlowPeerLimit && _options.PeersAlive?.Invoke() == true)
        {
            if (Interlocked.Exchange(ref _slowLogged, 1) == 0)
                _log.LogWarning("generation {Generation} rank {Rank}: no data from {Peer} for {Seconds:0.0} s, but every peer is alive (control plane); waiting up to {Limit:0} s",
                    Generation, Rank, peer, idle / 1000.0, _options.Timeout.TotalSeconds * _options.SlowPeerLimit);
            return;
        }
        Fail(new Failure(peer.Rank, $"no data for {idle / 1000.0:0.0} s (timeout {_options.Timeout.TotalSeconds:0.#} s)", Definitive: true, TimedOut: true));
    }

    /// <summary>Classifies an exception from a data loop; an abort already recorded wins.</summary>
    private void OnLinkError(Exception ex, RingPeer peer)
    {
        if (_failure != null && ex is OperationCanceledException or ObjectDisposedException) return;
        var failure = ex switch
        {
            CollectiveException c => new Failure(peer.Rank, c.Message, Definitive: true),
            EndOfStreamException => new Failure(peer.Rank, "connection closed by peer", Definitive: false),
            SocketException s => new Failure(peer.Rank, Describe(s), Definitive: false),
            IOException { InnerException: SocketException s } => new Failure(peer.Rank, Describe(s), Definitive: false),   // TLS
            ObjectDisposedException => new Failure(-1, "communicator disposed during the collective", Definitive: true),
            _ => new Failure(peer.Rank, $"{ex.GetType().Name}: {ex.Message}", Definitive: false),
        };
        Fail(failure);
    }

    /// <summary>After a call's loops stopped on a failure: wait (bounded) for a suspect to be resolved by a
    /// notice, then build the exception every caller sees.</summary>
    private async Task<Exception> ConcludeAsync(string op, CancellationToken ct)
    {
        if (_failure is { Definitive: false })
        {
            try { await _definitive.Task.WaitAsync(_options.FailureGrace); }
            catch (TimeoutException) { }
            var suspect = _failure!;
            if (!suspect.Definitive) Fail(suspect with { Definitive = true });
        }
        if (ct.IsCancellationRequested) return new OperationCanceledException($"{op} canceled", ct);
        return FailCall(op, _failure!);
    }

    private CollectiveException FailCall(string op, Failure failure)
    {
        Fail(failure);
        failure = _failure!;
        if (Interlocked.Exchange(ref _counted, 1) == 0)
        {
            PretrainMetrics.CollectiveFailuresTotal.Inc();
            _log.LogWarning("{Failure}", Describe(op, failure));
        }
        return new CollectiveException(Describe(op, failure), Generation, failure.PeerRank, PeerName(failure.PeerRank)) { PeerTimedOut = failure.TimedOut };
    }

    private string Describe(string op, Failure f)
    {
        var by = f.ReportedBy >= 0 ? $" (reported by rank {f.ReportedBy})" : "";
        return f.PeerRank < 0 || f.PeerRank >= WorldSize || f.PeerRank == Rank
            ? $"{op} (generation {Generation}) failed on rank {Rank}: {f.What}{by}"
            : $"{op} (generation {Generation}) lost {_peers[f.PeerRank]}: {f.What}{by}";
    }

    private string PeerName(int rank) => rank >= 0 && rank < WorldSize ? $"{_peers[rank].WorkerId} at {_peers[rank].Host}:{_peers[rank].Port}" : "";

    private static string Describe(SocketException ex) => ex.SocketErrorCode switch
    {
        SocketError.ConnectionReset => "connection reset by peer",
        SocketError.ConnectionRefused => "connection refused (peer not listening)",
        SocketError.Shutdown or SocketError.ConnectionAborted => "connection closed",
        SocketError.TimedOut => "network timeout",
        SocketError.HostUnreachable or SocketError.NetworkUnreachable => "host unreachable",
        var code => $"socket error {code}",
    };
}
