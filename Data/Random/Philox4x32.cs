namespace Pretrain.Data.Random;

/// <summary>
/// Philox4x32-10 (Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as easy as 1, 2, 3", SC 2011):
/// a bijection of a 128-bit counter under a 64-bit key, so every output block is a pure function of
/// (key, counter) and any block can be computed without the ones before it. It is the generator
/// behind cuRAND's and PyTorch's CUDA dropout, passes BigCrush, and has published known-answer vectors
/// (Random123's kat_vectors), which a hash of our own invention would not.
/// </summary>
public static class Philox4x32
{
    private const uint M0 = 0xD2511F53, M1 = 0xCD9E8D57;  // round multipliers
    private const uint W0 = 0x9E3779B9, W1 = 0xBB67AE85;  // Weyl key bumps: golden ratio, sqrt(3) - 1
    private const int Rounds = 10;                         // Random123's default; 7 already passes BigCrush

    /// <summary>The 128-bit output block for <paramref name="counter"/> under <paramref name="key"/>.</summary>
    public static Block Compute(Block counter, uint key0, uint key1)
    {
        var (c0, c1, c2, c3) = (counter.X0, counter.X1, counter.X2, counter.X3);
        for (var round = 0; round < Rounds; round++)
        {
            if (round > 0)
            {
                key0 += W0;
                key1 += W1;
            }
            var p0 = (ulong)M0 * c0;
            var p1 = (ulong)M1 * c2;
            (c0, c1, c2, c3) = ((uint)(p1 >> 32) ^ c1 ^ key0, (uint)p1, (uint)(p0 >> 32) ^ c3 ^ key1, (uint)p0);
        }
        return new Block(c0, c1, c2, c3);
    }

    /// <summary>Four 32-bit words: a counter going in, random bits coming out.</summary>
    public readonly record struct Block(uint X0, uint X1, uint X2, uint X3)
    {
        /// <summary>Word <paramref name="index"/> (0–3).</summary>
        public uint this[int index] => index switch
        {
            0 => X0,
            1 => X1,
            2 => X2,
            3 => X3,
            _ => throw new ArgumentOutOfRangeException(nameof(index), index, "a block has words 0-3"),
        };
    }
}
