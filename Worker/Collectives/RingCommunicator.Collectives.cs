using System.Runtime.CompilerServices;
using Pretrain.Shared.Telemetry;

namespace Pretrain.Worker.Collectives;

// The three collectives as schedules of ring passes, run by one send loop and one receive loop at
// the same time (full duplex). Each pass sends one byte range to next and receives one from prev,
// cut into segments; a pass marked SendWaits forwards what the previous pass (or, for broadcast, the
// same pass) received, segment by segment, so the ring is pipelined rather than step-synchronous.
public sealed partial class RingCommunicator
{
    private readonly record struct RingPass(int SendOffset, int SendLength, int ReceiveOffset, int ReceiveLength, bool Reduce, bool SendWaits);

    private readonly RingPass[] _passes;
    private readonly byte[] _scratch;                 // pinned; one TCP segment received before it is added in
    private readonly byte[] _headerOut = new byte[WireFormat.CallHeaderSize];
    private readonly byte[] _headerIn = new byte[WireFormat.CallHeaderSize];
    private readonly ProgressCounter _progress = new();
    private readonly PointerMemory _view = new();
    private long _sequence;
    private int _passCount;
    private volatile bool _receiveDone, _sendDone;

    /// <summary>Ring reduce-scatter then ring all-gather: each rank sends 2(n-1)/n of the data, the
    /// bandwidth optimum. Chunk c holds elements [c*L/n, (c+1)*L/n) (the first L%n chunks one longer).</summary>
    public async Task AllReduceSumAsync(Memory<float> data, CancellationToken ct = default)
    {
        ThrowIfUnusable("allreduce");
        if (WorldSize == 1) return;
        using var pin = data.Pin();
        await AllReduceAsync(pin, data.Length, sizeof(float), CollectiveOp.AllReduceSum, ct);
    }

    /// <summary>
    /// The same ring over 64-bit integers, for the exact gradient sum of reproducible runs: integer addition
    /// is associative, so every rank ends with the same bits whatever the ring's order (two's complement
    /// wraps, so even a partial sum that overflows comes right when the total fits).
    /// </summary>
    public async Task AllReduceSumAsync(Memory<long> data, CancellationToken ct = default)
    {
        ThrowIfUnusable("allreduce");
        if (WorldSize == 1) return;
        using var pin = data.Pin();
        await AllReduceAsync(pin, data.Length, sizeof(long), CollectiveOp.AllReduceSumInt64, ct);
    }

    private async Task AllReduceAsync(System.Buffers.MemoryHandle pin, int length, int elementSize, CollectiveOp kind, CancellationToken ct)
    {
        int n = WorldSize, r = Rank;
        _passCount = 0;
        for (var t = 0; t < n - 1; t++)
            AddPass(Chunk(length, Mod(r - t), elementSize), Chunk(length, Mod(r - t - 1), elementSize), reduce: true, sendWaits: t > 0);
        for (var s = 0; s < n - 1; s++)
            AddPass(Chunk(length, Mod(r + 1 - s), elementSize), Chunk(length, Mod(r - s), elementSize), reduce: false, sendWaits: true);
        await RunAsync("allreduce", kind, Attach(pin, (long)length * elementSize), ct);
        PretrainMetrics.AllReduceBytesTotal.Inc((double)length * elementSize);
    }

    /// <summary>Ring all-gather: block b (rank b's input) travels n-1 hops; n-1 passes of one block each.</summary>
    public async Task AllGatherAsync(ReadOnlyMemory<float> local, Memory<float> result, CancellationToken ct = default)
    {
        ThrowIfUnusable("allgather");
        int n = WorldSize, r = Rank, m = local.Length;
        if (result.Length != (long)m * n)
            throw new ArgumentException($"result holds {result.Length} floats, expected {m} x {n} = {(long)m * n}", nameof(result));
        local.Span.CopyTo(result.Span.Slice(r * m, m));
        if (n == 1) return;
        using var pin = result.Pin();
        _passCount = 0;
        for (var s = 0; s < n - 1; s++)
            AddPass((Mod(r - s) * m * 4, m * 4), (Mod(r - s - 1) * m * 4, m * 4), reduce: false, sendWaits: s > 0);
        await RunAsync("allgather", CollectiveOp.AllGather, Attach(pin, result.Length * 4L), ct);
    }

    /// <summary>Pipelined chain root -> root+1 -> ... -> root-1: each rank forwards segment k while
    /// receiving k+1, so time is ~size/bandwidth + (n-2) segments, not (n-1) x size/bandwidth.</summary>
    public async Task BroadcastAsync(Memory<byte> data, int root, CancellationToken ct = default)
    {
        ThrowIfUnusable("broadcast");
        if ((uint)root >= (uint)WorldSize) throw new ArgumentOutOfRangeException(nameof(root), root, $"world size is {WorldSize}");
        if (WorldSize == 1) return;
        using var pin = data.Pin();
        var position = Mod(Rank - root);
        _passCount = 0;
        AddPass((0, position < WorldSize - 1 ? data.Length : 0), (0, position > 0 ? data.Length : 0), reduce: false, sendWaits: position > 0);
        await RunAsync("broadcast", CollectiveOp.Broadcast, Attach(pin, data.Length), ct);
    }

    private int Mod(int x) => ((x % WorldSize) + WorldSize) % WorldSize;

    /// <summary>Element range of chunk <paramref name="c"/> of <paramref name="length"/> elements, in bytes.</summary>
    private (int Offset, int Length) Chunk(int length, int c, int elementSize)
    {
        int size = length / WorldSize, extra = length % WorldSize;
        return ((c * size + Math.Min(c, extra)) * elementSize, (size + (c < extra ? 1 : 0)) * elementSize);
    }

    private void AddPass((int Offset, int Length) send, (int Offset, int Length) receive, bool reduce, bool sendWaits) =>
        _passes[_passCount++] = new RingPass(send.Offset, send.Length, receive.Offset, receive.Length, reduce, sendWaits);

    private unsafe Memory<byte> Attach(System.Buffers.MemoryHandle pin, long bytes) => _view.Attach(pin.Pointer, bytes);

    private async Task RunAsync(string op, CollectiveOp kind, Memory<byte> buffer, CancellationToken ct)
    {
        Touch();  // before _busy: the watchdog must never see a busy call with a stale progress stamp
        if (Interlocked.Exchange(ref _busy, 1) == 1)
            throw new InvalidOperationException($"{op}: another collective is in flight; issue them one at a time, in the same order on every rank");
        var registration = ct.CanBeCanceled
            ? ct.UnsafeRegister(static s => ((RingCommunicator)s!).Fail(new Failure(((RingCommunicator)s!).Rank, "collective canceled by its caller", Definitive: true)), this)
            : default;
        try
        {
            var sequence = ++_sequence;
            WireFormat.WriteCallHeader(_headerOut, kind, Generation, sequence, buffer.Length);
            _progress.Reset();
            _receiveDone = _sendDone = false;
            if (_pump is { } pump) await RunOnPump(pump, kind, sequence, buffer);
            else
            {
                var sending = SendLoopAsync(buffer);  // first, so our header leaves even if the peer's is wrong
                var receiving = ReceiveLoopAsync(kind, sequence, buffer);
                await receiving;
                await sending;
            }
            if (_failure != null || ct.IsCancellationRequested) throw await ConcludeAsync(op, ct);
        }
        finally
        {
            registration.Dispose();
            _view.Detach();
            Volatile.Write(ref _busy, 0);
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask SendLoopAsync(Memory<byte> buffer)
    {
        try
        {
            var link = _toNext!;
            var token = _abort.Token;
            await link.SendAllAsync(_headerOut, token);
            long waited = 0;
            int segment = _segment;
            for (var p = 0; p < _passCount; p++)
            {
                var pass = _passes[p];
                for (var offset = 0; offset < pass.SendLength; offset += segment)
                {
                    if (pass.SendWaits) await _progress.WaitAsync(++waited);
                    await link.SendAllAsync(buffer.Slice(pass.SendOffset + offset, Math.Min(segment, pass.SendLength - offset)), token);
                    Touch();
                }
            }
            _sendDone = true;
        }
        catch (Exception ex) { OnLinkError(ex, Next); }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask ReceiveLoopAsync(CollectiveOp kind, long sequence, Memory<byte> buffer)
    {
        try
        {
            var link = _fromPrev!;
            var token = _abort.Token;
            if (!await link.ReceiveExactlyAsync(_headerIn, token)) throw new EndOfStreamException();
            if (WireFormat.CheckCallHeader(_headerIn, kind, Generation, sequence, buffer.Length) is { } mismatch)
                throw new CollectiveException($"desync: rank {Prev.Rank} {mismatch}", Generation, Prev.Rank, PeerName(Prev.Rank));
            Touch();
            int segment = _segment;
            for (var p = 0; p < _passCount; p++)
            {
                var pass = _passes[p];
                for (var offset = 0; offset < pass.ReceiveLength; offset += segment)
                {
                    var target = buffer.Slice(pass.ReceiveOffset + offset, Math.Min(segment, pass.ReceiveLength - offset));
                    var received = pass.Reduce
                        ? await link.ReceiveAddingAsync(target, kind, _scratch, token)   // TCP via _scratch; shared memory straight from the ring
                        : await link.ReceiveExactlyAsync(target, token);
                    if (!received) throw new EndOfStreamException();
                    Touch();
                    _progress.Advance();
                }
            }
            _receiveDone = true;
        }
        catch (Exception ex) { OnLinkError(ex, Prev); }
    }
}
