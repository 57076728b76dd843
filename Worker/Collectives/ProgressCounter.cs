using System.Threading.Tasks.Sources;

namespace Pretrain.Worker.Collectives;

/// <summary>
/// Counts received segments so the send loop can forward segment k of step t+1 as soon as segment k
/// of step t has arrived and been reduced. One waiter at a time (the send loop); no allocation per wait.
/// </summary>
internal sealed class ProgressCounter : IValueTaskSource
{
    // Continuations run on the thread pool so a woken send loop never runs inline on (and stalls)
    // the receive loop that advanced the counter.
    private ManualResetValueTaskSourceCore<bool> _core = new() { RunContinuationsAsynchronously = true };
    private readonly Lock _gate = new();
    private long _count, _target;
    private bool _waiting;
    private Exception? _fault;

    public void Reset()
    {
        lock (_gate) { _count = 0; _waiting = false; _fault = null; }
    }

    /// <summary>Completes once at least <paramref name="target"/> segments were received.</summary>
    public ValueTask WaitAsync(long target)
    {
        lock (_gate)
        {
            if (_fault != null) return ValueTask.FromException(_fault);
            if (_count >= target) return ValueTask.CompletedTask;
            _core.Reset();
            _target = target;
            _waiting = true;
            return new ValueTask(this, _core.Version);
        }
    }

    public void Advance()
    {
        lock (_gate)
        {
            _count++;
            if (!_waiting || _count < _target) return;
            _waiting = false;
        }
        _core.SetResult(true);
    }

    /// <summary>Wakes a waiting sender with <paramref name="fault"/>; later waits fail at once.</summary>
    public void Fault(Exception fault)
    {
        lock (_gate)
        {
            _fault = fault;
            if (!_waiting) return;
            _waiting = false;
        }
        _core.SetException(fault);
    }

    void IValueTaskSource.GetResult(short token) => _core.GetResult(token);
    ValueTaskSourceStatus IValueTaskSource.GetStatus(short token) => _core.GetStatus(token);
    void IValueTaskSource.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _core.OnCompleted(continuation, state, token, flags);
}
