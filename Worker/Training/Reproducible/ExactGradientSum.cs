using System.Runtime.InteropServices;
using Pretrain.Worker.Collectives;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pretrain.Worker.Training.Reproducible;

/// <summary>
/// What a micro-shard hands back: its gradient (in <c>.grad</c>, or as tensors from <c>autograd.grad</c>) and
/// its share of the step's loss. Methods of a reproducible run call one of these once per local shard.
/// </summary>
public interface IShardGradients
{
    /// <summary>Takes the gradient now in the parameters' <c>.grad</c> as shard <paramref name="shard"/>'s, and zeroes <c>.grad</c>.</summary>
    void TakeFromGrad(int shard, double loss);

    /// <summary>Takes shard <paramref name="shard"/>'s gradient as tensors in parameter order (null: no gradient). Thread-safe across shards.</summary>
    void Take(int shard, IReadOnlyList<Tensor?> gradients, double loss);
}

/// <summary>
/// The exact, order-independent gradient sum of reproducible runs. Each of this rank's micro-shards leaves
/// its gradient in a slot of its own (float32, the parameters laid end to end). Then one small all-gather
/// carries, per rank, the largest magnitude of every parameter over its shards, every shard's loss share
/// (as the bits of a double) and the rank's stop votes; every rank then knows each tensor's global maximum,
/// picks the same <see cref="FixedPoint"/> scale, converts its slots and adds them as 64-bit integers, and
/// one integer allreduce sums the ranks. The total is converted back into <c>.grad</c> once. The step's loss
/// is the sum of the shards' shares in shard order, in double, the same on every rank.
/// <para>
/// Costs against the fast path: (shards per rank) slots of the gradient's size, a conversion pass over
/// each, and an allreduce of 8 bytes per element instead of 4. A non-finite gradient anywhere makes its
/// tensor NaN everywhere, so every rank takes the loop's non-finite branch together.
/// </para>
/// </summary>
public sealed class ExactGradientSum : IShardGradients, IDisposable
{
    private const int Votes = 2; // stop, leave

    private readonly Parameter[] _parameters;
    private readonly long[] _offsets;          // parameter p is elements [_offsets[p], _offsets[p + 1]) of a slot
    private readonly int _shards;
    private readonly List<Tensor> _slots = [];  // grown to the most shards a rank has held
    private readonly Tensor _total;             // int64, the summed fixed-point gradient
    private readonly double[] _losses;
    private readonly bool[] _taken;
    private ShardPlan _plan;
    private (double Loss, int StopVotes, int LeaveVotes) _result;

    public ExactGradientSum(IReadOnlyList<Parameter> parameters, int shards)
    {
        _parameters = [.. parameters];
        foreach (var p in _parameters)
            if (p.dtype != ScalarType.Float32)
                throw new NotSupportedException($"the exact sum holds float32 gradients; a parameter is {p.dtype}");
        _offsets = new long[_parameters.Length + 1];
        for (var i = 0; i < _parameters.Length; i++) _offsets[i + 1] = _offsets[i] + _parameters[i].numel();
        _shards = shards;
        _total = zeros(_offsets[^1], dtype: int64).DetachFromDisposeScope();
        _losses = new double[shards];
        _taken = new bool[shards];
    }

    /// <summary>The step's loss (shard shares summed in shard order) and the ranks' votes, after <see cref="ReduceAsync"/>.</summary>
    public (double Loss, int StopVotes, int LeaveVotes) Result => _result;

    /// <summary>Starts a step on this rank's shards <paramref name="plan"/>: the slots they need exist and nothing is taken yet.</summary>
    public void Begin(ShardPlan plan)
    {
        _plan = plan;
        while (_slots.Count < plan.Count) _slots.Add(zeros(_offsets[^1], dtype: float32).DetachFromDisposeScope());
        Array.Clear(_taken);
    }

    public void TakeFromGrad(int shard, double loss)
    {
        var slot = SlotOf(shard);
        using var noGrad = no_grad();
        for (var i = 0; i < _parameters.Length; i++)
        {
            using var grad = _parameters[i].grad;
            using var view = slot.narrow(0, _offsets[i], _offsets[i + 1] - _offsets[i]);
            if (grad is null) view.zero_();
            else
            {
                view.copy_(grad.reshape(-1));
                grad.zero_();
            }
        }
        Taken(shard, loss);
    }

    public void Take(int shard, IReadOnlyList<Tensor?> gradients, double loss)
    {
        if (gradients.Count != _parameters.Length) throw new ArgumentException($"{gradients.Count} gradients for {_parameters.Length} parameters");
        var slot = SlotOf(shard);
        using var noGrad = no_grad();
        for (var i = 0; i < _parameters.Length; i++)
        {
            using var view = slot.narrow(0, _offsets[i], _offsets[i + 1] - _offsets[i]);
            if (gradients[i] is { } g) view.copy_(g.reshape(-1)); else view.zero_();
        }
        Taken(shard, loss);
    }

    private Tensor SlotOf(int shard)
    {
        var local = shard - _plan.First;
        if ((uint)local >= (uint)_plan.Count) throw new ArgumentOutOfRangeException(nameof(shard), shard, $"this rank holds shards {_plan.First}…{_plan.First + _plan.Count - 1}");
        return _slots[local];
    }

    private void Taken(int shard, double loss)
    {
        lock (_taken)
        {
            if (_taken[shard]) throw new InvalidOperationException($"micro-shard {shard}'s gradient was taken twice");
            _taken[shard] = true;
            _losses[shard] = loss;
        }
    }

    /// <summary>
    /// Sums the step's shard gradients over all ranks into <c>.grad</c>, exactly (see the class summary).
    /// Every rank calls it once per step, after all its shards are taken.
    /// </summary>
    public async Task ReduceAsync(ICommunicator group, bool stopVote, bool leaveVote, CancellationToken ct)
    {
        for (var i = 0; i < _plan.Count; i++)
            if (!_taken[_plan.First + i]) throw new InvalidOperationException($"micro-shard {_plan.First + i} of step was never computed");
        int world = group.WorldSize, most = ShardPlan.MostPerRank(_shards, world), p = _parameters.Length;
        int width = p + 2 * most + Votes;                    // maxima, loss shares as double bits, votes
        using var mine = zeros(width, dtype: float32);
        using var all = empty((long)width * world, dtype: float32);
        var local = Span(mine);
        for (var i = 0; i < p; i++)
        {
            float max = 0;
            for (var s = 0; s < _plan.Count; s++)
                max = Max(max, MaxMagnitude(Span(_slots[s]).Slice((int)_offsets[i], (int)(_offsets[i + 1] - _offsets[i]))));
            local[i] = max;
        }
        var shares = MemoryMarshal.Cast<float, double>(local.Slice(p, 2 * most));
        for (var s = 0; s < _plan.Count; s++) shares[s] = _losses[_plan.First + s];
        local[^2] = stopVote || leaveVote ? 1 : 0;
        local[^1] = leaveVote ? 1 : 0;
        await group.AllGather(mine, all, ct);

        // Every rank now reads the same gathered bytes, so everything below is the same on every rank.
        var gathered = Span(all);
        var maxima = new float[p];
        double loss = 0;
        int stops = 0, leaves = 0;
        var losses = new double[_shards];
        for (var r = 0; r < world; r++)
        {
            var row = gathered.Slice(r * width, width);
            for (var i = 0; i < p; i++) maxima[i] = Max(maxima[i], row[i]);
            stops += (int)row[^2];
            leaves += (int)row[^1];
        }
        foreach (var (rank, index, shard) in ShardPlan.Layout(_shards, world))
            losses[shard] = MemoryMarshal.Cast<float, double>(gathered.Slice(rank * width + p, 2 * most))[index];
        foreach (var share in losses) loss += share;         // shard order: the same sum whatever the world size

        var exponents = new int[p];
        var total = Integers(_total);
        total.Clear();
        for (var i = 0; i < p; i++)
        {
            if (!float.IsFinite(maxima[i])) continue;
            exponents[i] = FixedPoint.Exponent(maxima[i], _shards);
            var range = ((int)_offsets[i], (int)(_offsets[i + 1] - _offsets[i]));
            for (var s = 0; s < _plan.Count; s++)
                FixedPoint.Accumulate(Span(_slots[s]).Slice(range.Item1, range.Item2), exponents[i], total.Slice(range.Item1, range.Item2));
        }
        if (world > 1) await group.AllReduceSum(_total, ct);

        using var noGrad = no_grad();
        for (var i = 0; i < p; i++)
        {
            var parameter = _parameters[i];
            using (var existing = parameter.grad)
                if (existing is null) parameter.grad = zeros_like(parameter);
            using var grad = parameter.grad!;
            if (!grad.is_contiguous()) throw new InvalidOperationException($"parameter {i}'s gradient is not contiguous");
            var into = MemoryMarshal.Cast<byte, float>(grad.bytes);
            if (float.IsFinite(maxima[i]))
                FixedPoint.ToFloat(Integers(_total).Slice((int)_offsets[i], into.Length), exponents[i], into);
            else
                into.Fill(float.NaN);                        // the loop's non-finite branch, on every rank alike
        }
        _result = (loss, stops, leaves);
    }

    /// <summary>The larger magnitude; NaN wins, so a NaN anywhere reaches every rank's maximum.</summary>
    private static float Max(float a, float b) => float.IsNaN(a) || float.IsNaN(b) ? float.NaN : Math.Max(a, b);

    private static float MaxMagnitude(ReadOnlySpan<float> values) =>
        values.IsEmpty ? 0 : Math.Abs(System.Numerics.Tensors.TensorPrimitives.MaxMagnitude(values));

    private static Span<float> Span(Tensor t) => MemoryMarshal.Cast<byte, float>(t.bytes);
    private static Span<long> Integers(Tensor t) => MemoryMarshal.Cast<byte, long>(t.bytes);

    public void Dispose()
    {
        foreach (var slot in _slots) slot.Dispose();
        _total.Dispose();
    }
}
