using System.Diagnostics;
using Pretrain.Shared.Recipes;
using Pretrain.Shared.Telemetry;
using static TorchSharp.torch;

namespace Pretrain.Worker.Training.Checkpoints;

/// <summary>
/// Checkpoints that do not stall the ring: at a step boundary the state is copied into snapshot tensors
/// (made once, reused), and writing, fsyncing and hashing happen on another thread while training goes
/// on. A save waits only while the previous one is still being written; that wait and the copy are the
/// only time the training thread gives to a checkpoint (<c>pretrain_checkpoint_blocking_seconds</c>).
/// A write that failed is raised at the next save or at <see cref="Flush"/>.
/// </summary>
public sealed class CheckpointWriter(CheckpointStore store, Action<string> log) : IDisposable
{
    /// <summary>Test hook: milliseconds each write sleeps first, to make a save slower than the collective timeout.</summary>
    public const string DelayVariable = "PRETRAIN_TEST_CHECKPOINT_DELAY_MS";

    private static readonly int DelayMs = int.TryParse(Environment.GetEnvironmentVariable(DelayVariable), out var ms) ? ms : 0;

    private Tensor[] _model = [], _optimizer = [];
    private Task _pending = Task.CompletedTask;

    /// <summary>Time the training thread spent in the last <see cref="Save"/> (waiting for the previous write, then copying).</summary>
    public TimeSpan LastBlocking { get; private set; }

    /// <summary>Snapshots the state now and writes it in the background; <paramref name="written"/> runs on the writer's thread.</summary>
    public void Save(TrainingState state, IReadOnlyList<(string Name, Tensor Tensor)> model, IReadOnlyList<(string Name, Tensor Tensor)> optimizer,
        Recipe recipe, int worldSize, Action<long, string> written)
    {
        var started = Stopwatch.GetTimestamp();
        Flush();
        _model = Copy(model, _model);
        _optimizer = Copy(optimizer, _optimizer);
        var content = new CheckpointContent(state, Named(model, _model), Named(optimizer, _optimizer), recipe, worldSize);
        LastBlocking = Stopwatch.GetElapsedTime(started);
        PretrainMetrics.CheckpointBlockingSeconds.Observe(LastBlocking.TotalSeconds);
        _pendingStep = state.Step;
        _pending = Task.Run(() =>
        {
            var writing = Stopwatch.GetTimestamp();
            if (DelayMs > 0) Thread.Sleep(DelayMs);
            var directory = store.Write(content, recipe.Checkpoint.Keep);
            log($"checkpoint {directory} written in {Stopwatch.GetElapsedTime(writing).TotalMilliseconds:F0} ms (training blocked {LastBlocking.TotalMilliseconds:F1} ms)");
            written(state.Step, directory);
        });
    }

    /// <summary>
    /// Longest a save or the end of the run waits for the write in flight. Disk, not network: generous, but a
    /// stuck volume (a hung NFS mount) must end in an error naming it, not a hang.
    /// </summary>
    public static readonly TimeSpan WriteTimeout = TimeSpan.FromMinutes(10);

    private long _pendingStep;

    /// <summary>Waits (bounded by <see cref="WriteTimeout"/>) for the write in flight; rethrows its failure.</summary>
    public void Flush()
    {
        var pending = _pending;
        _pending = Task.CompletedTask;
        bool done;
        try { done = pending.Wait(WriteTimeout, CancellationToken.None); }
        catch (AggregateException) { done = true; }   // rethrown below as itself, not wrapped
        if (!done)
            throw new TimeoutException($"the checkpoint of step {_pendingStep} was not written within {WriteTimeout.TotalMinutes:0} min ({store.Directory}); is the volume stuck?");
        pending.GetAwaiter().GetResult();
    }

    private static Tensor[] Copy(IReadOnlyList<(string Name, Tensor Tensor)> from, Tensor[] into)
    {
        if (into.Length != from.Count)
        {
            foreach (var t in into) t.Dispose();
            into = from.Select(f => empty_like(f.Tensor).DetachFromDisposeScope()).ToArray();
        }
        using var noGrad = no_grad();
        for (var i = 0; i < from.Count; i++)
            into[i].copy_(from[i].Tensor);
        return into;
    }

    private static IReadOnlyList<(string Name, Tensor Tensor)> Named(IReadOnlyList<(string Name, Tensor Tensor)> names, Tensor[] tensors) =>
        names.Select((n, i) => (n.Name, tensors[i])).ToList();

    public void Dispose()
    {
        try
        {
            if (!_pending.Wait(WriteTimeout)) log($"warning: the checkpoint of step {_pendingStep} was still being written after {WriteTimeout.TotalMinutes:0} min; leaving it");
        }
        catch (AggregateException e) { log($"warning: the checkpoint of step {_pendingStep} failed: {e.GetBaseException().Message}"); }
        if (!_pending.IsCompleted) return;     // a writer still reads the snapshot: leave its tensors to the process's end
        foreach (var t in _model.Concat(_optimizer)) t.Dispose();
    }
}
