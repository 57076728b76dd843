using System.Numerics.Tensors;
using System.Runtime.InteropServices;

namespace Pretrain.Worker.Collectives;

/// <summary>The sum a ring's reduce step applies to what it receives, over fp32 or int64 elements.</summary>
internal static class Reduction
{
    /// <summary>Bytes per element of <paramref name="kind"/>'s data (broadcast and allgather move bytes; only the sums read elements).</summary>
    public static int ElementSize(CollectiveOp kind) => kind == CollectiveOp.AllReduceSumInt64 ? sizeof(long) : sizeof(float);

    /// <summary>target += received, elementwise with SIMD (AVX2: 8 or 4 lanes; int64 wraps). <paramref name="received"/> may be
    /// unaligned (a shared-memory ring); both are whole elements long.</summary>
    public static void AddInto(CollectiveOp kind, Span<byte> target, ReadOnlySpan<byte> received)
    {
        if (kind == CollectiveOp.AllReduceSumInt64)
        {
            var sum = MemoryMarshal.Cast<byte, long>(target);
            TensorPrimitives.Add(sum, MemoryMarshal.Cast<byte, long>(received), sum);
        }
        else
        {
            var sum = MemoryMarshal.Cast<byte, float>(target);
            TensorPrimitives.Add(sum, MemoryMarshal.Cast<byte, float>(received), sum);
        }
    }
}
