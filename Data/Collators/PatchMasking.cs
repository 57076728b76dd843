using Pretrain.Data.Random;
using static TorchSharp.torch;

namespace Pretrain.Data.Collators;

/// <summary>
/// MAE's random masking (He et al. 2022, §3): of an image's <see cref="Patches"/> patches, <see cref="Visible"/>
/// are shown to the encoder and the rest are reconstructed. Which ones is a pure function of (seed, step, sample id):
/// a partial Fisher–Yates shuffle whose draw i picks the i-th visible patch from the patches not yet picked (draw i of
/// the sample's stream), so a sample is masked the same on any rank, in any batch, and after a resume. Every sample
/// keeps exactly the same number of patches, so the batch stays rectangular and each sample's loss is a mean over
/// the same number of masked patches.
/// </summary>
public sealed class PatchMasking
{
    private const uint Stream = 0x4D4145; // "MAE": keeps masking apart from the augmentations of the same (seed, step, sample)

    private readonly ulong _seed;

    /// <param name="patches">Patches per image (49 for 28-px images in 4-px patches).</param>
    /// <param name="maskRatio">Share of patches hidden, in (0, 1); the visible count is rounded to the nearest integer.</param>
    public PatchMasking(int patches, double maskRatio, long seed)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(patches, 2);
        Patches = patches;
        Visible = VisibleCount(patches, maskRatio);
        if (Visible < 1 || Visible >= patches)
            throw new ArgumentException($"a mask ratio of {maskRatio} leaves {Visible} of {patches} patches visible; at least one must be visible and one hidden");
        _seed = (ulong)seed;
    }

    public int Patches { get; }
    public int Visible { get; }
    public int Masked => Patches - Visible;

    /// <summary>round(patches · (1 − ratio)): 12 of 49 at MAE's 0.75 (MAE truncates; the two agree there).</summary>
    public static int VisibleCount(int patches, double maskRatio) => (int)Math.Round(patches * (1 - maskRatio), MidpointRounding.AwayFromZero);

    /// <summary>
    /// The patches of sample <paramref name="sampleId"/> at <paramref name="step"/>, each set in ascending patch order:
    /// <paramref name="visible"/> (<see cref="Visible"/> places) and <paramref name="masked"/> (<see cref="Masked"/> places).
    /// </summary>
    public void Draw(long step, long sampleId, Span<int> visible, Span<int> masked)
    {
        if (visible.Length != Visible || masked.Length != Masked)
            throw new ArgumentException($"visible and masked need {Visible} and {Masked} places, got {visible.Length} and {masked.Length}");
        var rng = new CounterRandom(_seed, step, sampleId, Stream);
        Span<int> order = Patches <= 1024 ? stackalloc int[Patches] : new int[Patches];
        for (var i = 0; i < Patches; i++)
            order[i] = i;
        for (var i = 0; i < Visible; i++)
        {
            var j = rng.Integer(i, i, Patches);
            (order[i], order[j]) = (order[j], order[i]);
        }
        Span<bool> shown = Patches <= 1024 ? stackalloc bool[Patches] : new bool[Patches];
        shown.Clear();
        foreach (var patch in order[..Visible])
            shown[patch] = true;
        int v = 0, m = 0;
        for (var patch = 0; patch < Patches; patch++)
            if (shown[patch]) visible[v++] = patch;
            else masked[m++] = patch;
    }

    /// <summary>
    /// The masks of a batch, one row per id of <paramref name="sampleIds"/>, int64: the visible patches (B, Visible) and
    /// the masked ones (B, Masked), each ascending, and <c>Restore</c> (B, Patches), where Restore[b, p] is patch p's place
    /// in the row [visible…, masked…] — what puts the decoder's tokens back in patch order with one gather.
    /// </summary>
    public (Tensor Visible, Tensor Masked, Tensor Restore) Collate(ReadOnlySpan<long> sampleIds, long step)
    {
        int b = sampleIds.Length;
        var (visible, masked, restore) = (new long[b * Visible], new long[b * Masked], new long[b * Patches]);
        Fill(sampleIds, step, visible, masked, restore);
        return (tensor(visible, new long[] { b, Visible }), tensor(masked, new long[] { b, Masked }), tensor(restore, new long[] { b, Patches }));
    }

    /// <summary>
    /// <see cref="Collate"/> into buffers the caller keeps (row-major, exactly B·Visible, B·Masked and B·Patches places), so a
    /// training step allocates nothing for its masks.
    /// </summary>
    public void Fill(ReadOnlySpan<long> sampleIds, long step, Span<long> visible, Span<long> masked, Span<long> restore)
    {
        int b = sampleIds.Length, n = Patches, k = Visible, m = Masked;
        if (visible.Length != b * k || masked.Length != b * m || restore.Length != b * n)
            throw new ArgumentException($"{b} samples need {b * k}, {b * m} and {b * n} places, got {visible.Length}, {masked.Length} and {restore.Length}");
        Span<int> shown = n <= 1024 ? stackalloc int[k] : new int[k];
        Span<int> hidden = n <= 1024 ? stackalloc int[m] : new int[m];
        for (var i = 0; i < b; i++)
        {
            Draw(step, sampleIds[i], shown, hidden);
            for (var j = 0; j < k; j++)
            {
                visible[i * k + j] = shown[j];
                restore[i * n + shown[j]] = j;
            }
            for (var j = 0; j < m; j++)
            {
                masked[i * m + j] = hidden[j];
                restore[i * n + hidden[j]] = k + j;
            }
        }
    }
}
