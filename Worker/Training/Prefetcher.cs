namespace Pretrain.Worker.Training;

/// <summary>
/// A micro-batch's input made one micro-batch ahead on the thread pool while the current one computes, as PyTorch's
/// DataLoader workers do. The loop announces the next micro-batch before it runs the current one
/// (<see cref="Methods.IPretrainingMethod.PrepareAhead"/>); when the method takes the current one's input
/// (<see cref="Take"/>), the announced one starts. One input is made at a time, so <c>make</c> may reuse one buffer.
/// <para>
/// What is made ahead is what the method would make when the batch's turn comes: <c>make</c> is a function of the step
/// and the sample ids only, neither of which depends on the model, so prefetching changes when a batch's data is made,
/// never what it is. A batch taken that is not the one made ahead (the world changed at a new generation, a failed step
/// is retried) is made there and then, and the one ahead is disposed. A failure of <c>make</c> surfaces from
/// <see cref="Take"/>, as it would have without prefetching. Used from the training thread only.
/// </para>
/// </summary>
/// <param name="make">The input of a step's sample ids.</param>
/// <param name="ahead">False: announcements are ignored and every batch is made when it is taken.</param>
public sealed class Prefetcher<T>(Func<long, long[], T> make, bool ahead = true) : IDisposable where T : class, IDisposable
{
    private (long Step, long[] Ids)? _announced;
    private (long Step, long[] Ids, Task<T> Making)? _ahead;

    /// <summary>
    /// Names the batch that comes after the one about to be taken: it starts once that is taken. Replaces an earlier
    /// announcement that never started (its step failed before taking its input).
    /// </summary>
    public void Announce(long step, ReadOnlySpan<long> ids)
    {
        if (ahead) _announced = (step, ids.ToArray());
    }

    /// <summary>
    /// The input of <paramref name="step"/>'s <paramref name="ids"/>: the one made ahead when it is this batch (waiting
    /// for it to finish if it has not), else made now; then starts the announced batch.
    /// </summary>
    public T Take(long step, ReadOnlySpan<long> ids)
    {
        T input;
        if (_ahead is { } ahead && ahead.Step == step && ids.SequenceEqual(ahead.Ids))
        {
            _ahead = null;
            input = Finish(ahead.Making, step);
        }
        else
        {
            Discard();
            input = make(step, ids.ToArray());
        }
        if (_announced is { } next)
        {
            _announced = null;
            _ahead = (next.Step, next.Ids, Task.Run(() => make(next.Step, next.Ids)));
        }
        return input;
    }

    /// <summary>Waits for the batch in the making (<see cref="Finish"/>) and disposes it: <c>make</c> may then run again.</summary>
    private void Discard()
    {
        if (_ahead is not { } ahead) return;
        _ahead = null;
        try
        {
            Finish(ahead.Making, ahead.Step).Dispose();
        }
        catch (Exception error) when (error is not TimeoutException)   // still in the making: another make would share its buffer
        {
            // Its failure belongs to a batch nobody takes; the batch taken instead is made again and fails on its own if it must.
        }
    }

    /// <summary>
    /// Local work (reading mapped shards, augmenting), but a wait all the same: bounded, and named when it runs out, as a
    /// disk that stopped answering would leave it.
    /// </summary>
    private static T Finish(Task<T> making, long step)
    {
        bool done;
        try { done = making.Wait(MakeTimeout); }
        catch (AggregateException) { done = true; }   // failed: GetResult below rethrows the error itself
        if (!done)
            throw new TimeoutException($"the input of step {step}, made ahead on the thread pool, was not ready within {MakeTimeout.TotalMinutes:0} min");
        return making.GetAwaiter().GetResult();
    }

    private static readonly TimeSpan MakeTimeout = TimeSpan.FromMinutes(5);

    public void Dispose()
    {
        _announced = null;
        Discard();
    }
}
