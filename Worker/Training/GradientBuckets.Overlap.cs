using System.Diagnostics;
using Pretrain.Worker.Collectives;
using Pretrain.Worker.Models.Layers;

namespace Pretrain.Worker.Training;

// A step's reduction, overlapped with the last micro-step's backward:
//   Arm(group, ct)     before the last micro-step: its forward places the marks, its backward starts buckets
//   Launch(loss, …)    after that backward: the extras into the last bucket, every bucket not yet started
//   ReduceAsync()      awaits them all; Result holds the summed loss and votes
//   AbandonAsync()     instead, when the step failed: waits for what was started, so Zero() is not overwritten later
// Buckets start strictly in bucket order, bucket i only once 0 … i−1 have started (as DDP), so every rank starts
// the same collectives in the same order whenever backward completes them.
public sealed partial class GradientBuckets : IGradientMarkListener
{
    private readonly Lock _gate = new();      // marks are reached on the thread that runs backward
    private readonly int[][] _markedBuckets;  // per mark: the bucket of each parameter it covers
    private readonly bool[] _placed, _reached; // per mark, this step: placed in the forward; reached by backward
    private readonly int[] _remaining;        // per bucket, this step: parameters not yet known complete
    private readonly Task[] _reductions;      // per bucket, this step: its allreduce
    private readonly long[] _startedAt, _endedAt;
    private ICommunicator? _group;            // lent from Arm to the end of ReduceAsync or AbandonAsync
    private CancellationToken _ct;
    private bool _armed;                      // marks are placed, and reached marks start buckets
    private long _ticket;                     // numbers the arming, so a mark of an older graph is ignored
    private int _next;                        // the next bucket to start; every bucket before it has started
    private long _backwardEnded;
    private (double Loss, int StopVotes, int LeaveVotes) _local;

    /// <summary>The step's loss (sum over ranks) and how many ranks voted to stop (leavers among them), after <see cref="ReduceAsync"/>.</summary>
    public (double Loss, int StopVotes, int LeaveVotes) Result { get; private set; }

    /// <summary>How the last reduced step's allreduce went against its backward pass (default with one rank).</summary>
    public GradientReduction LastReduction { get; private set; }

    /// <summary>
    /// Starts a step's reduction over <paramref name="group"/>, before the last micro-step's forward and backward:
    /// the marks its forward passes are placed, and each bucket starts as soon as backward has completed it.
    /// Earlier micro-steps only add into the buckets. A world of one places no mark.
    /// </summary>
    public void Arm(ICommunicator group, CancellationToken ct)
    {
        lock (_gate)
        {
            if (_group is not null) throw new InvalidOperationException("the previous step's gradient reduction was neither awaited nor abandoned");
            (_group, _ct, _armed, _next) = (group, ct, group.WorldSize > 1, 0);
            _ticket++;
            Array.Clear(_placed);
            Array.Clear(_reached);
            for (var b = 0; b < _buckets.Length; b++) _remaining[b] = _buckets[b].Parameters.Length;
            Array.Fill(_reductions, Task.CompletedTask);
        }
    }

    long? IGradientMarkListener.Place(GradientMark mark)
    {
        lock (_gate)
        {
            var m = Array.IndexOf(_marks, mark);
            if (!_armed || m < 0 || _placed[m]) return null;   // only a mark's first pass: its parameters are used after it
            _placed[m] = true;
            return _ticket;
        }
    }

    void IGradientMarkListener.Reached(GradientMark mark, long ticket)
    {
        lock (_gate)
        {
            var m = Array.IndexOf(_marks, mark);
            if (!_armed || ticket != _ticket || m < 0 || _reached[m]) return;   // a second backward through it adds nothing new
            _reached[m] = true;
            foreach (var b in _markedBuckets[m]) _remaining[b]--;
            // The last bucket carries the extras, written after backward: Launch starts it.
            while (_next < _buckets.Length - 1 && _remaining[_next] == 0) Start(_next++);
        }
    }

    /// <summary>
    /// After the last micro-step's backward: writes this rank's share of the loss and its votes (to stop: 0 or 1; a
    /// leaver also votes to stop) into the last bucket, and starts every bucket not started yet — those whose
    /// parameters no mark covers, or got no gradient — in bucket order, the last bucket last.
    /// </summary>
    public void Launch(double localLoss, bool stopVote, bool leaveVote = false)
    {
        lock (_gate)
        {
            var group = _group ?? throw new InvalidOperationException("Launch without Arm: the step's reduction was not started");
            _armed = false;
            _backwardEnded = Stopwatch.GetTimestamp();
            _local = (localLoss, stopVote || leaveVote ? 1 : 0, leaveVote ? 1 : 0);
            if (group.WorldSize == 1) return;
            var extras = _buckets[^1].Memory.GetSpan()[^Extras..];
            extras[0] = (float)localLoss;
            extras[1] = _local.StopVotes;
            extras[2] = _local.LeaveVotes;
            while (_next < _buckets.Length) Start(_next++);
        }
    }

    /// <summary>
    /// Waits for every bucket's allreduce (all of them, failed or not: nothing writes into the buckets afterwards) and
    /// reads the summed loss and votes into <see cref="Result"/>. A failed collective is rethrown as it failed: the
    /// <see cref="CollectiveException"/> naming the peer. Counted in pretrain_allreduce_bytes_total by the collective.
    /// </summary>
    public async Task ReduceAsync()
    {
        var group = _group ?? throw new InvalidOperationException("ReduceAsync without Arm and Launch");
        try
        {
            await Task.WhenAll(_reductions);
        }
        finally
        {
            lock (_gate)
            {
                _group = null;
                _armed = false;
            }
        }
        if (group.WorldSize == 1)
        {
            (Result, LastReduction) = (_local, default);
            return;
        }
        var extras = _buckets[^1].Memory.GetSpan()[^Extras..];
        Result = (extras[0], (int)Math.Round(extras[1]), (int)Math.Round(extras[2]));
        LastReduction = Timing();
    }

    /// <summary>
    /// Ends a step that failed before its reduction completed: no more buckets start, and this waits until those that
    /// started have ended (each is bounded by the collective's timeout and the step's cancellation), so that zeroing
    /// the gradients afterwards is not undone by a late write. Never throws.
    /// </summary>
    public async Task AbandonAsync()
    {
        Task[] started;
        lock (_gate)
        {
            _armed = false;
            started = _group is null ? [] : _reductions[.._next];
        }
        try { await Task.WhenAll(started); }
        catch (Exception) { }   // the step's own failure is what the caller reports
        lock (_gate)
            _group = null;
    }

    /// <summary>Starts bucket <paramref name="b"/>'s allreduce (under the gate, in bucket order); a failure to start surfaces in <see cref="ReduceAsync"/>.</summary>
    private void Start(int b)
    {
        _startedAt[b] = Stopwatch.GetTimestamp();
        try
        {
            _reductions[b] = Ended(b, _group!.AllReduceSum(_buckets[b].Flat, _ct));
        }
        catch (Exception e)
        {
            _endedAt[b] = _startedAt[b];
            _reductions[b] = Task.FromException(e);
        }
    }

    /// <summary>The allreduce of bucket <paramref name="b"/>, its end timed on the thread that ends it (not on the training thread, busy in backward).</summary>
    private async Task Ended(int b, CollectiveHandle handle)
    {
        try { await handle.AsTask().ConfigureAwait(false); }
        finally { _endedAt[b] = Stopwatch.GetTimestamp(); }
    }

    /// <summary>
    /// The step's allreduce against its backward pass. The ring runs one collective at a time, so bucket b is counted
    /// busy from when it could run — started, and bucket b−1 ended — to its end (a global batch norm all-reduce queued
    /// between them counts as the bucket's); what of that lies before backward ended was hidden behind it.
    /// </summary>
    private GradientReduction Timing()
    {
        long previous = long.MinValue, busy = 0, hidden = 0;
        for (var b = 0; b < _buckets.Length; b++)
        {
            long from = Math.Max(_startedAt[b], previous), to = _endedAt[b];
            if (to > from)
            {
                busy += to - from;
                hidden += Math.Max(0, Math.Min(to, _backwardEnded) - from);
            }
            previous = Math.Max(previous, to);
        }
        return new GradientReduction(_startedAt[0], _backwardEnded, previous, (double)busy / Stopwatch.Frequency, (double)hidden / Stopwatch.Frequency);
    }
}

/// <summary>
/// One step's gradient allreduce against its backward pass, as <see cref="Stopwatch"/> timestamps — the first bucket's
/// start, the end of backward, the last bucket's end — and the time the buckets were being reduced
/// (<paramref name="Seconds"/>), of which <paramref name="HiddenSeconds"/> ran before backward ended. The step waited
/// for the rest (the allreduce phase). Default: nothing crossed the network (one rank, or the reproducible path).
/// </summary>
public readonly record struct GradientReduction(long Started, long BackwardEnded, long Ended, double Seconds, double HiddenSeconds);
