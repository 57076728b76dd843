using Pretrain.Data.Collators;
using Xunit;

namespace Pretrain.Tests.Data;

public class PatchMaskingTests
{
    private const int Patches = 49; // a 28-px image in 4-px patches

    [Theory]
    [InlineData(0.75, 12)]   // MAE's ratio: round(49 · 0.25) = round(12.25)
    [InlineData(0.5, 25)]    // round(24.5) rounds away from zero
    [InlineData(0.9, 5)]
    public void Every_sample_keeps_exactly_the_rounded_share_of_patches_and_hides_the_rest(double ratio, int expected)
    {
        var masking = new PatchMasking(Patches, ratio, seed: 1);
        Assert.Equal(expected, masking.Visible);
        for (var sample = 0; sample < 200; sample++)
        {
            var (visible, masked) = Draw(masking, step: 3, sample);
            Assert.Equal(expected, visible.Length);
            Assert.Equal(Patches - expected, masked.Length);
            Assert.Equal(Enumerable.Range(0, Patches), visible.Concat(masked).Order());   // a partition of the patches
            Assert.Equal(visible.Order(), visible);                                       // each ascending
            Assert.Equal(masked.Order(), masked);
        }
    }

    [Fact]
    public void The_mask_is_a_function_of_seed_step_and_sample_alone()
    {
        var masking = new PatchMasking(Patches, 0.75, seed: 1);
        Assert.Equal(Draw(masking, 3, 17).Visible, Draw(new PatchMasking(Patches, 0.75, seed: 1), 3, 17).Visible); // another instance, same draw
        Assert.NotEqual(Draw(masking, 3, 17).Visible, Draw(masking, 3, 18).Visible);                     // another sample
        Assert.NotEqual(Draw(masking, 3, 17).Visible, Draw(masking, 4, 17).Visible);                     // another step
        Assert.NotEqual(Draw(masking, 3, 17).Visible, Draw(new PatchMasking(Patches, 0.75, seed: 2), 3, 17).Visible); // another seed
    }

    [Fact]
    public void A_sample_is_masked_the_same_whichever_batch_holds_it()
    {
        var masking = new PatchMasking(Patches, 0.75, seed: 5);
        var (visible, masked, restore) = masking.Collate([4, 9, 1000, 2], step: 7);
        var (alone, aloneMasked, aloneRestore) = masking.Collate([1000], step: 7);
        using (visible) using (masked) using (restore) using (alone) using (aloneMasked) using (aloneRestore)
        {
            Assert.Equal(new long[] { 4, masking.Visible }, visible.shape);
            Assert.Equal(new long[] { 4, masking.Masked }, masked.shape);
            Assert.Equal(new long[] { 4, Patches }, restore.shape);
            Assert.True(visible[2].eq(alone[0]).all().item<bool>());
            Assert.True(masked[2].eq(aloneMasked[0]).all().item<bool>());
            Assert.True(restore[2].eq(aloneRestore[0]).all().item<bool>());
            Assert.Equal(Draw(masking, 7, 1000).Visible.Select(p => (long)p), alone[0].data<long>().ToArray());
        }
    }

    [Fact]
    public void Restore_puts_the_visible_then_masked_row_back_in_patch_order()
    {
        var masking = new PatchMasking(Patches, 0.75, seed: 3);
        var (visible, masked, restore) = masking.Collate([11, 12, 13], step: 2);
        using (visible) using (masked) using (restore)
        {
            using var order = TorchSharp.torch.cat([visible, masked], 1);   // (B, N): the patch at each place of the row
            using var restored = order.gather(1, restore);                  // (B, N): the patch at each patch position
            using var identity = TorchSharp.torch.arange(Patches, dtype: TorchSharp.torch.int64).expand(3, Patches);
            Assert.True(restored.eq(identity).all().item<bool>());
        }
    }

    [Fact]
    public void A_ratio_that_hides_all_or_no_patches_is_refused()
    {
        Assert.Throws<ArgumentException>(() => new PatchMasking(Patches, 0.999, seed: 1));   // round(0.049) = 0 visible
        Assert.Throws<ArgumentException>(() => new PatchMasking(Patches, 0.001, seed: 1));   // round(48.95) = 49 visible, none hidden
    }

    private static (int[] Visible, int[] Masked) Draw(PatchMasking masking, long step, long sample)
    {
        var (visible, masked) = (new int[masking.Visible], new int[masking.Masked]);
        masking.Draw(step, sample, visible, masked);
        return (visible, masked);
    }
}
