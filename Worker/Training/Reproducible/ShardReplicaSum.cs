using System.Runtime.ExceptionServices;
using System.Runtime.InteropServices;
using Pretrain.Worker.Collectives;
using Pretrain.Worker.Models.Layers;
using static TorchSharp.torch;

namespace Pretrain.Worker.Training.Reproducible;

/// <summary>
/// The replica sum of a reproducible run whose layers couple the whole global batch (SimCLR's global batch
/// norm): a sum over the <b>micro-shards</b>, not the ranks, in shard order, so it is the same whatever the
/// world size. A rank runs its shards' forward (and later backward) passes on concurrent threads
/// (<see cref="Run{T}"/>), because every shard must reach a batch-norm layer before any can leave it. At
/// each sum the rank's shard threads meet; the last to arrive all-gathers every rank's per-shard partials
/// (padded to the most shards a rank holds), adds the <see cref="ReproducibleRecipe.Shards"/> partials of
/// each element in shard order in double, and hands the same float result to every thread of every rank.
/// <para>
/// Nothing waits unbounded: a thread that waits longer than the collective timeout for the others fails
/// the sum with a message naming the shards that never came, a thread that fails wakes the others with its
/// error, and the all-gather fails by its own timeout. Backward runs the sum inside autograd, where nothing
/// can throw: there a failure is recorded (<see cref="Fail"/>) and rethrown by <see cref="ThrowIfFailed"/>.
/// </para>
/// </summary>
public sealed class ShardReplicaSum(ICommunicator group, ShardPlan plan, TimeSpan timeout) : IReplicaSum
{
    [ThreadStatic] private static int t_local;   // this thread's local shard + 1; 0 on threads that compute no shard

    private readonly object _gate = new();
    private readonly Tensor?[] _partials = new Tensor?[plan.Count];
    private int _arrived;
    private long _round;
    private Exception? _failure;

    /// <summary>
    /// Runs <paramref name="work"/>(i) for each local shard i on a thread of its own and waits for all of
    /// them (each bounds its own waits); the first failure is thrown once every thread has stopped.
    /// </summary>
    public T[] Run<T>(Func<int, T> work)
    {
        var results = new T[plan.Count];
        var threads = Enumerable.Range(0, plan.Count).Select(i => new Thread(() =>
        {
            t_local = i + 1;
            try { results[i] = work(i); }
            catch (Exception error)
            {
                Fail(error);                                   // the other shards may be waiting for this one at a sum
            }
            finally { t_local = 0; }
        }) { Name = $"shard {plan.First + i}", IsBackground = true }).ToArray();
        foreach (var thread in threads) thread.Start();
        // Every wait inside a shard thread is bounded (the sums, the all-gather), but not its arithmetic, so a thread
        // is waited for as long as it computes; once the step has failed, the others get one timeout to stop.
        DateTime? failedAt = null;
        foreach (var thread in threads)
            while (!thread.Join(TimeSpan.FromMilliseconds(200)))
            {
                if (_failure is null) continue;
                failedAt ??= DateTime.UtcNow;
                if (DateTime.UtcNow - failedAt > timeout)
                    throw new CollectiveException($"micro-shard thread '{thread.Name}' did not stop within {timeout.TotalSeconds:0.#} s of the failure: {_failure.Message}",
                        group.Generation, -1, "this rank", _failure);
            }
        if (_failure is { } root and not (CollectiveException or TimeoutException))
            ExceptionDispatchInfo.Capture(root).Throw();     // a shard's own error (the others stopped because of it)
        ThrowIfFailed();
        return results;
    }

    /// <summary>The first local shard moves the running statistics; the others compute the same values and leave them.</summary>
    public bool UpdatesStatistics => t_local == 1;

    public int Replica => t_local > 0 ? plan.First + t_local - 1 : throw new InvalidOperationException("a shard sum outside a shard thread: run the forward through ShardReplicaSum.Run");

    public int Replicas => plan.Shards;

    public void SumInPlace(Tensor data)
    {
        var local = t_local - 1;
        if (local < 0) throw new InvalidOperationException("a shard sum outside a shard thread: run the forward through ShardReplicaSum.Run");
        lock (_gate)
        {
            ThrowIfFailed();
            _partials[local] = data;
            var round = _round;
            if (++_arrived == plan.Count)
            {
                try { Combine(); }
                catch (Exception error) { _failure ??= error; }
                (_arrived, _round) = (0, round + 1);
                Array.Clear(_partials);
                Monitor.PulseAll(_gate);
            }
            else
            {
                var deadline = DateTime.UtcNow + timeout;
                while (_round == round && _failure is null)
                    if (!Monitor.Wait(_gate, Max(deadline - DateTime.UtcNow, TimeSpan.Zero)) && _round == round && _failure is null)
                    {
                        var missing = Enumerable.Range(0, plan.Count).Where(i => _partials[i] is null).Select(i => plan.First + i);
                        _failure = new TimeoutException($"micro-shard(s) {string.Join(", ", missing)} did not reach a global batch-norm sum within {timeout.TotalSeconds:0.#} s");
                        Monitor.PulseAll(_gate);
                    }
            }
            ThrowIfFailed();
        }
    }

    public void Fail(Exception error)
    {
        lock (_gate)
        {
            _failure ??= error;
            Monitor.PulseAll(_gate);
        }
    }

    public void ThrowIfFailed()
    {
        if (_failure is { } failure)
            throw failure is CollectiveException peer
                ? new CollectiveException($"global batch norm over micro-shards: {peer.Message}", peer.Generation, peer.PeerRank, peer.PeerName, peer)
                : new CollectiveException($"global batch norm over micro-shards: {failure.Message}", group.Generation, -1, "unknown", failure);
    }

    /// <summary>Every shard of every rank: one all-gather of this rank's partials, then the shard-order sum, written back into each partial.</summary>
    private void Combine()
    {
        long n = _partials[0]!.numel();
        int world = group.WorldSize, most = ShardPlan.MostPerRank(plan.Shards, world);
        using var mine = zeros(most * n, dtype: float32);
        for (var i = 0; i < plan.Count; i++)
        {
            if (_partials[i]!.numel() != n) throw new InvalidOperationException($"micro-shard {plan.First + i} sums {_partials[i]!.numel()} values, shard {plan.First} {n}");
            using var row = mine.narrow(0, i * n, n);
            row.copy_(_partials[i]!.reshape(-1));
        }
        using var received = world > 1 ? empty(world * most * n, dtype: float32) : null;
        if (received is not null)
        {
            try { group.AllGather(mine, received, CancellationToken.None).AsTask().WaitAsync(timeout).GetAwaiter().GetResult(); }  // the ring's own timeout fires first
            catch (TimeoutException e)
            {
                throw new TimeoutException($"the all-gather of {n} batch-norm sums per micro-shard over {world} ranks did not finish within {timeout.TotalSeconds:0.#} s", e);
            }
        }
        var all = received ?? mine;

        var total = new double[n];
        ShardPlan.SumInShardOrder(MemoryMarshal.Cast<byte, float>(all.bytes), plan.Shards, world, (int)n, total);
        var first = MemoryMarshal.Cast<byte, float>(_partials[0]!.bytes);          // contiguous float32 (ReplicaSumFunction's clone)
        for (var k = 0; k < first.Length; k++) first[k] = (float)total[k];
        for (var i = 1; i < plan.Count; i++)
            _partials[i]!.copy_(_partials[0]!.view(_partials[i]!.shape));
    }

    private static TimeSpan Max(TimeSpan a, TimeSpan b) => a > b ? a : b;
}
