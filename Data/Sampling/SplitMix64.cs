namespace Pretrain.Data.Sampling;

/// <summary>
/// SplitMix64 (Steele, Lea, Flood 2014): a counter-based generator whose output is a pure function of
/// (seed, counter). Used instead of System.Random, whose algorithm may change between .NET versions
/// and would silently change the sample order of a resumed job.
/// </summary>
public static class SplitMix64
{
    private const ulong Golden = 0x9E3779B97F4A7C15; // 2^64 / φ, SplitMix64's increment

    /// <summary>The <paramref name="counter"/>-th output of the stream seeded with <paramref name="seed"/>.</summary>
    public static ulong At(ulong seed, ulong counter) => Mix(seed + (counter + 1) * Golden);

    /// <summary>Combines several values into one seed (e.g. seed, step, rank for dropout).</summary>
    public static ulong Combine(ulong a, ulong b, ulong c = 0) => Mix(Mix(Mix(a) ^ b) ^ c);

    /// <summary>Uniform integer in [0, bound) by Lemire's multiply-shift; bias below 2^-40 for bounds under 2^24.</summary>
    public static long Below(ulong random, long bound) => (long)(((UInt128)random * (ulong)bound) >> 64);

    private static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EB;
        return z ^ (z >> 31);
    }
}
