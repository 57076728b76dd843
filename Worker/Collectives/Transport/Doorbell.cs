using System.Threading.Tasks.Sources;

namespace Pretrain.Worker.Collectives;

/// <summary>
/// Wakes one waiter when rung. A ring while nobody waits is kept (one, not counted), so a ring that comes between a
/// waiter's last look at the shared counters and its wait is never lost; a kept ring that turns out stale costs the
/// waiter one more look. No allocation per wait (as <see cref="ProgressCounter"/>).
/// </summary>
internal sealed class Doorbell : IValueTaskSource
{
    // On the thread pool: the ringer is a socket pump that must go on reading.
    private ManualResetValueTaskSourceCore<bool> _core = new() { RunContinuationsAsynchronously = true };
    private readonly Lock _gate = new();
    private bool _rung, _waiting;
    private Exception? _fault;
    private CancellationTokenRegistration _cancel;

    /// <summary>Completes at the next ring (at once when one is kept), or fails with the fault or the cancellation.</summary>
    public ValueTask WaitAsync(CancellationToken ct)
    {
        short version;
        lock (_gate)
        {
            if (_fault != null) return ValueTask.FromException(_fault);
            if (_rung)
            {
                _rung = false;
                return ValueTask.CompletedTask;
            }
            if (ct.IsCancellationRequested) return ValueTask.FromCanceled(ct);
            _core.Reset();
            version = _core.Version;
            _waiting = true;
        }
        // Outside the lock: a token canceled meanwhile runs the callback right here, which takes the lock.
        _cancel = ct.UnsafeRegister(static (state, token) => ((Doorbell)state!).Cancel(token), this);
        return new ValueTask(this, version);
    }

    public void Ring()
    {
        lock (_gate)
        {
            if (!_waiting)
            {
                _rung = true;
                return;
            }
            _waiting = false;
        }
        _core.SetResult(true);
    }

    /// <summary>Fails the waiter, and every later wait, with <paramref name="fault"/> (the link is gone).</summary>
    public void Fault(Exception fault)
    {
        lock (_gate)
        {
            _fault ??= fault;
            if (!_waiting) return;
            _waiting = false;
        }
        _core.SetException(fault);
    }

    private void Cancel(CancellationToken token)
    {
        lock (_gate)
        {
            if (!_waiting) return;
            _waiting = false;
        }
        _core.SetException(new OperationCanceledException(token));
    }

    void IValueTaskSource.GetResult(short token)
    {
        _cancel.Dispose();
        _core.GetResult(token);
    }

    ValueTaskSourceStatus IValueTaskSource.GetStatus(short token) => _core.GetStatus(token);

    void IValueTaskSource.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _core.OnCompleted(continuation, state, token, flags);
}
