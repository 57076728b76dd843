using Pretrain.Shared.Telemetry;
using Pretrain.Worker.Collectives;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pretrain.Worker.Training;

/// <summary>
/// Where gradients cross the network. The parameters' gradients are fused into a few flat float32
/// tensors (buckets) so the ring sees a few large messages instead of one per parameter; each bucket is
/// allreduced in place through <see cref="ICollectives.AllReduceSumAsync"/> on its native memory, divided
/// by the world size and copied back into <c>.grad</c>. The step's loss rides along in one extra float at
/// the end of the last bucket, so the global mean loss costs no extra collective. Buckets, views and
/// memories are made once; a step allocates nothing but the <c>.grad</c> handles. World size 1 skips the
/// network. With gradient accumulation the gradients of the micro-steps add up in <c>.grad</c> and cross
/// the network once, after the last (DDP's <c>no_sync</c>); Unpack divides by world size × micro-steps.
/// </summary>
public sealed class GradientBuckets : IDisposable
{
    public const long FirstBucketBytes = 1L << 20; // DDP: the first bucket is small so the ring starts early
    public const long BucketBytes = 25L << 20;     // DDP's default; 1 MiB buckets cost 2.6–16% at 8–16 ranks

    private sealed record Entry(Parameter Parameter, Tensor View);
    private sealed record Bucket(Tensor Flat, NativeMemory<float> Memory, Entry[] Entries);

    private readonly ICollectives _collectives;
    private readonly Bucket[] _buckets;
    private readonly IReadOnlyList<Parameter> _parameters;
    private readonly int _microSteps;
    private readonly Scalar _inverseCount; // 1 / (world size × micro-steps)
    private double _localLoss; // world size 1: the loss does not cross the network

    public int Count => _buckets.Length;

    /// <param name="parameters">In a fixed order, the same on every rank.</param>
    /// <param name="microSteps">Micro-steps whose gradients (and losses) are summed before each reduction.</param>
    public GradientBuckets(IReadOnlyList<Parameter> parameters, ICollectives collectives, int microSteps = 1)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(microSteps, 1);
        (_collectives, _parameters, _microSteps) = (collectives, parameters, microSteps);
        _inverseCount = (1.0 / ((double)collectives.WorldSize * microSteps)).ToScalar();
        var plan = collectives.WorldSize == 1 ? [] : Plan(parameters);
        _buckets = plan.Select((members, i) => Make(members, withLossSlot: i == plan.Count - 1)).ToArray();
    }

    // Three calls rather than one async method: TorchSharp's dispose scopes and libtorch's grad mode are
    // per thread, and an await may resume on another thread. Pack and Unpack run inside the step's
    // scopes; ReduceAsync touches only native memory through ICollectives.

    /// <summary>Copies the gradients into the buckets and the sum of the micro-steps' local losses into the loss slot.</summary>
    public void Pack(double localLoss)
    {
        if (_buckets.Length == 0)
        {
            _localLoss = localLoss;
            return;
        }
        using var noGrad = no_grad();
        foreach (var bucket in _buckets)
            foreach (var e in bucket.Entries)
            {
                using var grad = e.Parameter.grad;
                if (grad is null) e.View.zero_(); else e.View.copy_(grad);
            }
        _buckets[^1].Memory.GetSpan()[^1] = (float)localLoss;
    }

    /// <summary>Sums every bucket over all ranks, in place (the collective counts pretrain_allreduce_bytes_total).</summary>
    public async Task ReduceAsync(CancellationToken ct)
    {
        foreach (var bucket in _buckets)
            await _collectives.AllReduceSumAsync(bucket.Memory.Memory, ct);
    }

    /// <summary>Divides by world size × micro-steps, copies the averages back into <c>.grad</c>; returns the global mean loss.</summary>
    public double Unpack()
    {
        using var noGrad = no_grad();
        if (_buckets.Length == 0)
        {
            if (_microSteps > 1)
                foreach (var p in _parameters)
                {
                    using var grad = p.grad;
                    grad?.mul_(_inverseCount);
                }
            return _localLoss / _microSteps;
        }
        foreach (var bucket in _buckets)
        {
            bucket.Flat.mul_(_inverseCount);
            foreach (var e in bucket.Entries)
            {
                using var grad = e.Parameter.grad;
                grad?.copy_(e.View);
            }
        }
        return _buckets[^1].Memory.GetSpan()[^1]; // already divided with the gradients
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

    /// <param name="withLossSlot">One extra float at the end carries the step's loss.</param>
    private static Bucket Make(List<Parameter> parameters, bool withLossSlot)
    {
        var elements = parameters.Sum(p => p.numel()) + (withLossSlot ? 1 : 0);
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
        _inverseCount.Dispose();
    }
}
