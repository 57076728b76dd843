using Pretrain.Data.Collators;
using Xunit;
using static TorchSharp.torch;

namespace Pretrain.Tests.Data;

public class CausalLmCollatorTests
{
    private const int Separator = 99;

    [Fact]
    public void Documents_are_joined_each_followed_by_the_separator() =>
        Assert.Equal([1, 2, 3, Separator, 4, Separator, Separator],
            CausalLmCollator.Concatenate([[1, 2, 3], [4], []], Separator));

    [Fact]
    public void Packed_windows_have_fixed_shape_and_targets_shifted_by_one()
    {
        using var scope = NewDisposeScope();
        var stream = Enumerable.Range(0, 23).ToArray(); // 22 / 4 = 5 whole windows; tokens 21 and 22 only as targets or left over
        var collator = new CausalLmCollator(context: 4);
        Assert.Equal(5, collator.Windows(stream.Length));
        var (inputs, targets) = collator.Collate(stream, [0, 4, 2]);
        Assert.Equal(new long[] { 3, 4 }, inputs.shape);
        Assert.Equal(new long[] { 3, 4 }, targets.shape);
        Assert.Equal(ScalarType.Int64, inputs.dtype);
        Assert.Equal(new long[] { 0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11 }, inputs.data<long>().ToArray());
        Assert.Equal(new long[] { 1, 2, 3, 4, 17, 18, 19, 20, 9, 10, 11, 12 }, targets.data<long>().ToArray());
    }

    [Fact]
    public void A_window_past_the_stream_is_refused()
    {
        var collator = new CausalLmCollator(context: 4);
        Assert.Equal(0, collator.Windows(4)); // 4 tokens give 4 inputs but only 3 targets
        Assert.Throws<ArgumentOutOfRangeException>(() => collator.Window(new int[9], 2, new long[4], new long[4]));
    }
}
