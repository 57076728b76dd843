using Pretrain.Shared.Telemetry;
using Pretrain.Worker.Collectives;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pretrain.Worker.Training;

/// <summary>
/// Where gradients cross the network. The parameters' gradients are fused into a few flat float32
/// tensors (buckets) so the ring sees a few large messages instead of one per parameter; each bucket is
/// allreduced in place through <see cref="ICollectives.AllReduceSumAsync"/> on its native memory and
/// copied back into <c>.grad</c>. Methods normalise their losses by the global sample count, so the
/// reduction is a plain <b>sum</b> and holds no world size: the buckets outlive every generation.
/// Two extra floats at the end of the last bucket carry the step's loss and the ranks' votes to stop at
/// this step boundary (a newcomer waits) and to leave (SIGTERM), so agreeing on where a generation ends costs
/// no extra collective (torchft's should_commit rides along the same way). Buckets, views and memories
/// are made once; a step allocates nothing but the <c>.grad</c> handles. With gradient accumulation the
/// gradients of the micro-steps add up in <c>.grad</c> and cross the network once, after the last
/// (DDP's <c>no_sync</c>). A world of one skips the copies and the network.
/// </summary>
public sealed class GradientBuckets : IDisposable
{
    public const long FirstBucketBytes = 1L << 20; // DDP: the first bucket is small so the ring starts early
    public const long BucketBytes = 25L << 20;     // DDP's default; 1 MiB buckets cost 2.6–16% at 8–16 ranks
    private const int Extras = 3;                  // loss, stop votes, leave votes

    private sealed record Entry(Parameter Parameter, Tensor View);
    private sealed record Bucket(Tensor Flat, NativeMemory<float> Memory, Entry[] Entries); // Memory: the extras are written through it

    private readonly Bucket[] _buckets;
    private (double Loss, int StopVotes, int LeaveVotes) _local; // world size 1: nothing crosses the network
    private bool _packed;

    public int Count => _buckets.Length;

    /// <param name="parameters">In a fixed order, the same on every rank.</param>
    public GradientBuckets(IReadOnlyList<Parameter> parameters)
    {
        var plan = Plan(parameters);
        _buckets = plan.Select((members, i) => Make(members, extras: i == plan.Count - 1 ? Extras : 0)).ToArray();
    }

    // Three calls rather than one async method: TorchSharp's dispose scopes and libtorch's grad mode are
    // per thread, and an await may resume on another thread. Pack and Unpack run inside the step's
    // scopes; ReduceAsync touches only native memory through ICollectives.

    /// <summary>
    /// Copies the gradients into the buckets, and this rank's share of the loss and its stop vote (0 or 1)
    /// into the extra slots. In a world of one, only remembers the loss and the vote.
    /// </summary>
    public void Pack(double localLoss, bool stopVote, ICommunicator group, bool leaveVote = false)
    {
        _local = (localLoss, stopVote || leaveVote ? 1 : 0, leaveVote ? 1 : 0);
        _packed = group.WorldSize > 1;
        if (!_packed) return;
        using var noGrad = no_grad();
        foreach (var bucket in _buckets)
            foreach (var e in bucket.Entries)
            {
                using var grad = e.Parameter.grad;
                if (grad is null) e.View.zero_(); else e.View.copy_(grad);
            }
        var extras = _buckets[^1].Memory.GetSpan()[^Extras..];
        extras[0] = (float)localLoss;
        extras[1] = _local.StopVotes;
        extras[2] = _local.LeaveVotes;
    }

    /// <summary>
    /// Sums every bucket over all ranks, in place (the collective counts pretrain_allreduce_bytes_total). All
    /// buckets are started at once and awaited together: the communicator runs them back to back.
    /// </summary>
    public async Task ReduceAsync(ICommunicator group, CancellationToken ct)
    {
        if (!_packed) return;
        var handles = new Task[_buckets.Length];
        for (var i = 0; i < _buckets.Length; i++)
            handles[i] = group.AllReduceSum(_buckets[i].Flat, ct).AsTask();
        await Task.WhenAll(handles);
    }

    /// <summary>Copies the summed gradients back into <c>.grad</c>; returns the step's loss and how many ranks voted to stop (leavers among them).</summary>
    public (double Loss, int StopVotes, int LeaveVotes) Unpack()
    {
        if (!_packed) return _local;
        using var noGrad = no_grad();
        foreach (var bucket in _buckets)
            foreach (var e in bucket.Entries)
            {
                using var grad = e.Parameter.grad;
                grad?.copy_(e.View);
            }
        var extras = _buckets[^1].Memory.GetSpan()[^Extras..];
        return (extras[0], (int)Math.Round(extras[1]), (int)Math.Round(extras[2]));
    }

    /// <summary>Groups consecutive parameters until a bucket reaches its cap (1 MiB first, then 25 MiB).</summary>
    private static List<List<Parameter>> Plan(IReadOnlyList<Parameter> parameters)
    {
        var plan = new List<List<Parameter>> { new() };
        long bytes = 0;
        foreach (var p in parameters)
        {
            var cap = plan.Count == 1 ? FirstBucketBytes : BucketBytes;
            if (bytes > 0 && bytes + p.numel() * sizeof(float) > cap)
            {
                plan.Add([]);
                bytes = 0;
            }
            plan[^1].Add(p);
            bytes += p.numel() * sizeof(float);
        }
        return plan;
    }

    /// <param name="extras">Floats after the gradients: the loss and the stop votes, in the last bucket.</param>
    private static Bucket Make(List<Parameter> parameters, int extras)
    {
        var elements = parameters.Sum(p => p.numel()) + extras;
        var flat = zeros(elements, dtype: ScalarType.Float32).DetachFromDisposeScope();
        long offset = 0;
        var entries = new Entry[parameters.Count];
        for (var i = 0; i < parameters.Count; i++)
        {
            var p = parameters[i];
            if (p.dtype != ScalarType.Float32)
                throw new NotSupportedException($"gradient buckets hold float32; parameter {i} is {p.dtype}");
            entries[i] = new Entry(p, flat.narrow(0, offset, p.numel()).view(p.shape).DetachFromDisposeScope());
            offset += p.numel();
        }
        return new Bucket(flat, new NativeMemory<float>(flat), entries);
    }

    public void Dispose()
    {
        foreach (var bucket in _buckets)
        {
            foreach (var e in bucket.Entries)
                e.View.Dispose();
            bucket.Flat.Dispose();
        }
    }
}
