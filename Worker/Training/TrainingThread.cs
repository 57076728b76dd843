using System.Collections.Concurrent;

namespace Pretrain.Worker.Training;

/// <summary>
/// Runs the training loop on one dedicated thread whose synchronization context brings every await back
/// to it. TorchSharp's dispose scopes and libtorch's grad mode belong to a thread; on this thread they
/// hold across the awaits of collectives, so a method can await an all-gather in the middle of its
/// forward pass. It is also a thread of its own, not a pool thread: a method that must block on a
/// collective (global batch norm inside a module's forward) blocks only the loop, and the ring's socket
/// continuations, which carry no context, keep running on the pool.
/// </summary>
public static class TrainingThread
{
    /// <summary>Runs <paramref name="body"/> on a new thread named <paramref name="name"/>; completes with its result.</summary>
    public static Task<T> Run<T>(string name, Func<Task<T>> body)
    {
        var result = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        var thread = new Thread(() =>
        {
            using var context = new SingleThreadContext();
            SynchronizationContext.SetSynchronizationContext(context);
            try
            {
                var task = body();
                task.ContinueWith(_ => context.Complete(), TaskScheduler.Default);
                context.RunUntilComplete();
                var outcome = task.GetAwaiter();
                result.SetResult(outcome.GetResult());
            }
            catch (Exception e)
            {
                result.TrySetException(e);
            }
            finally
            {
                SynchronizationContext.SetSynchronizationContext(null);
            }
        }) { Name = name, IsBackground = true };
        thread.Start();
        return result.Task;
    }

    /// <summary>A queue of continuations drained by the one thread that created it.</summary>
    private sealed class SingleThreadContext : SynchronizationContext, IDisposable
    {
        private readonly BlockingCollection<(SendOrPostCallback Callback, object? State)> _queue = new();

        public override void Post(SendOrPostCallback d, object? state)
        {
            try { _queue.Add((d, state)); }
            catch (Exception e) when (e is InvalidOperationException or ObjectDisposedException)
            {
                ThreadPool.QueueUserWorkItem(_ => d(state)); // the loop has ended: nothing drains this queue any more
            }
        }

        public override void Send(SendOrPostCallback d, object? state) =>
            throw new NotSupportedException("the training thread does not accept synchronous sends");

        public override SynchronizationContext CreateCopy() => this;

        public void RunUntilComplete()
        {
            foreach (var (callback, state) in _queue.GetConsumingEnumerable())
                callback(state);
        }

        public void Complete() => _queue.CompleteAdding();

        public void Dispose() => _queue.Dispose();
    }
}
