using System.Numerics;
using System.Runtime.InteropServices;

namespace Pretrain.Worker.Training.Reproducible;

/// <summary>
/// Float32 ↔ 64-bit fixed point with a shared power-of-two scale, the representation in which gradients of
/// reproducible runs are summed. Why the sum is exact: every value x becomes the integer q = round(x·2^f),
/// a function of x and f alone; integer addition is associative and commutative, so Σq is the same bits in
/// any order, over any split into ranks and any ring. Only the conversions round, each once, the same way on
/// every rank. The scale f is shared by all shards of a tensor (from the maximum |x| over the global batch,
/// found by a max exchange first), so it does not depend on the world size either.
/// <para>
/// Headroom: with M the largest |x| of a tensor over all S shards and e = ⌊log₂M⌋ + 1 (so M &lt; 2^e), f = 50 −
/// ⌈log₂S⌉ − e makes every |q| ≤ 2^(50 − ⌈log₂S⌉), so the total of S of them is at most 2^50 (plus S/2 from
/// rounding): below 2^51 for every shard count the recipe allows (2^16), which is what the conversions need.
/// Precision: the largest value keeps 50 − ⌈log₂S⌉ bits (34 at 2^16 shards, 47 at 8), against float32's 24;
/// values below M·2^−(50−⌈log₂S⌉) round to zero, far under float32 summation's own error.
/// </para>
/// <para>
/// Why 2^51 and not 2^63: below 2^51 a double converts to and from an integer by adding 1.5·2^52 and reading
/// the bits (round to nearest even, exact), which vectorises on AVX2, where no float → int64 instruction
/// exists. Both conversions are plain IEEE arithmetic, so every x86-64 or ARM machine computes the same bits.
/// </para>
/// </summary>
public static class FixedPoint
{
    /// <summary>Bits of magnitude the total may use: |Σq| &lt; 2^51.</summary>
    public const int TotalBits = 50;

    private const double Magic = 6755399441055744.0;                   // 1.5·2^52: doubles in [2^52, 2^53) are the integers
    private static readonly long MagicBits = BitConverter.DoubleToInt64Bits(Magic);

    /// <summary>
    /// The scale exponent f for a tensor whose largest magnitude over all <paramref name="shards"/> shards is
    /// <paramref name="maxMagnitude"/>; 0 when it is zero. Call only with a finite maximum.
    /// </summary>
    public static int Exponent(float maxMagnitude, int shards)
    {
        if (!float.IsFinite(maxMagnitude)) throw new ArgumentOutOfRangeException(nameof(maxMagnitude), maxMagnitude, "a non-finite gradient has no scale");
        if (maxMagnitude == 0) return 0;
        var e = MathF.ILogB(maxMagnitude) + 1;                           // M < 2^e
        return TotalBits - HeadroomBits(shards) - e;
    }

    /// <summary>⌈log₂ shards⌉: the bits the sum of that many values may add.</summary>
    public static int HeadroomBits(int shards) => shards <= 1 ? 0 : 32 - BitOperations.LeadingZeroCount((uint)(shards - 1));

    /// <summary>total[i] += round(values[i]·2^f) (two's complement, so the order of additions never matters).</summary>
    public static void Accumulate(ReadOnlySpan<float> values, int f, Span<long> total)
    {
        if (values.Length != total.Length) throw new ArgumentException($"{values.Length} values for {total.Length} totals");
        var scale = Math.ScaleB(1.0, f);
        int i = 0, lanes = Vector<double>.Count;
        if (Vector.IsHardwareAccelerated && values.Length >= 2 * lanes)
        {
            var v = MemoryMarshal.Cast<float, Vector<float>>(values);
            var t = MemoryMarshal.Cast<long, Vector<long>>(total);
            var magic = new Vector<double>(Magic);
            var magicBits = new Vector<long>(MagicBits);
            var s = new Vector<double>(scale);
            for (var k = 0; k < v.Length; k++)
            {
                Vector.Widen(v[k], out var low, out var high);
                t[2 * k] += Vector.AsVectorInt64(low * s + magic) - magicBits;     // x·2^f is exact; + magic rounds it to an integer
                t[2 * k + 1] += Vector.AsVectorInt64(high * s + magic) - magicBits;
            }
            i = v.Length * Vector<float>.Count;
        }
        for (; i < values.Length; i++)
            total[i] += BitConverter.DoubleToInt64Bits(values[i] * scale + Magic) - MagicBits;
    }

    /// <summary>values[i] = total[i]·2^−f, rounded once to float32. |total[i]| must be below 2^51 (see the headroom above).</summary>
    public static void ToFloat(ReadOnlySpan<long> total, int f, Span<float> values)
    {
        if (values.Length != total.Length) throw new ArgumentException($"{total.Length} totals for {values.Length} values");
        var scale = Math.ScaleB(1.0, -f);
        for (var i = 0; i < total.Length; i++)
            values[i] = (float)((BitConverter.Int64BitsToDouble(total[i] + MagicBits) - Magic) * scale);
    }
}
