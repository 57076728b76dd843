namespace Pretrain.Data.Random;

/// <summary>
/// Random numbers that are a pure function of (seed, step, sample id, stream, draw index) — brief,
/// principle 4: a sample's augmentations and masks do not depend on which worker drew it or what that
/// worker computed before. Philox4x32-10 with the seed as its 64-bit key and the counter laid out as
/// (draw block, stream, sample id, step), one 32-bit word each, so distinct coordinates can never share
/// a block (no hashing, hence no collisions). Each block yields four draws.
/// </summary>
/// <remarks>
/// Limits from that layout: step and sample id below 2^32 (4.3 billion), up to 2^34 draws per stream.
/// The struct is 24 bytes and immutable; computing a draw allocates nothing.
/// </remarks>
public readonly struct CounterRandom
{
    private const double TwoPi = 2 * Math.PI;
    private const long MaxDraws = 4L << 32;

    private readonly uint _key0, _key1, _step, _sampleId, _stream;

    public CounterRandom(ulong seed, long step, long sampleId, uint stream = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(step);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(step, uint.MaxValue);
        ArgumentOutOfRangeException.ThrowIfNegative(sampleId);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(sampleId, uint.MaxValue);
        (_key0, _key1) = ((uint)seed, (uint)(seed >> 32));
        (_step, _sampleId, _stream) = ((uint)step, (uint)sampleId, stream);
    }

    /// <summary>The same (seed, step, sample) on another stream, e.g. one stream per view and operation.</summary>
    public CounterRandom WithStream(uint stream) => new(this, stream);

    private CounterRandom(CounterRandom other, uint stream) =>
        (_key0, _key1, _step, _sampleId, _stream) = (other._key0, other._key1, other._step, other._sampleId, stream);

    /// <summary>Block <paramref name="block"/> of this stream: draws 4·block … 4·block+3.</summary>
    public Philox4x32.Block Block(long block)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(block);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(block, uint.MaxValue);
        return Philox4x32.Compute(new Philox4x32.Block((uint)block, _stream, _sampleId, _step), _key0, _key1);
    }

    /// <summary>32 random bits: draw <paramref name="draw"/> of this stream.</summary>
    public uint Bits(long draw)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(draw);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(draw, MaxDraws);
        return Block(draw >> 2)[(int)(draw & 3)];
    }

    /// <summary>Uniform in [0, 1): the top 24 bits, so every value is an exact float and 1 is never returned.</summary>
    public float Uniform(long draw) => ToUnit(Bits(draw));

    /// <summary>Uniform in [<paramref name="low"/>, <paramref name="high"/>).</summary>
    public float Uniform(long draw, float low, float high) => low + (high - low) * Uniform(draw);

    /// <summary>
    /// Uniform integer in [<paramref name="low"/>, <paramref name="high"/>) by Lemire's multiply-shift
    /// on 32 bits; the relative bias is below range/2^32 (5e-5 for a 200k-token vocabulary).
    /// </summary>
    public int Integer(long draw, int low, int high)
    {
        if (high <= low)
            throw new ArgumentException($"empty range [{low}, {high})");
        return low + (int)(((ulong)Bits(draw) * (ulong)((long)high - low)) >> 32);
    }

    /// <summary>True with probability <paramref name="probability"/>.</summary>
    public bool Chance(long draw, float probability) => Uniform(draw) < probability;

    /// <summary>
    /// Standard normal by Box–Muller from draws 2·<paramref name="draw"/> and 2·<paramref name="draw"/>+1.
    /// The radius uses 1 − u in (0, 1], so the logarithm is finite (|z| ≤ 5.8 with 24-bit uniforms).
    /// </summary>
    public float Normal(long draw)
    {
        var u1 = 1.0 - Uniform(2 * draw);
        var u2 = (double)Uniform(2 * draw + 1);
        return (float)(Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(TwoPi * u2));
    }

    /// <summary>Bits → [0, 1) with 24-bit resolution (float's mantissa).</summary>
    public static float ToUnit(uint bits) => (bits >> 8) * (1.0f / (1 << 24));
}
