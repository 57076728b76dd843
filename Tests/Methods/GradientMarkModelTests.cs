using Pretrain.Data.Collators;
using Pretrain.Shared.Recipes;
using Pretrain.Worker.Models;
using Pretrain.Worker.Models.Layers;
using Pretrain.Worker.Models.Vision;
using Xunit;
using static TorchSharp.torch;

namespace Pretrain.Tests.Methods;

/// <summary>
/// The contract the overlapped allreduce rests on, model by model: when backward reaches a mark, the gradients of the
/// parameters it covers are already what they are at the end of backward — so a bucket started then reads its final
/// gradients. A listener copies them at each mark and the copies are compared with the end.
/// </summary>
public class GradientMarkModelTests
{
    /// <summary>Places every mark on its first pass and copies its parameters' gradients when backward reaches it.</summary>
    private sealed class Snapshots : IGradientMarkListener
    {
        private readonly HashSet<GradientMark> _placed = [];
        public Dictionary<GradientMark, Tensor?[]> AtMark { get; } = [];

        public long? Place(GradientMark mark) => _placed.Add(mark) ? 1 : null;

        public void Reached(GradientMark mark, long ticket) =>
            AtMark[mark] = [.. mark.Parameters.Select(p => p.grad?.clone())];
    }

    private static void AssertCompleteAtEveryMark(IReadOnlyList<GradientMark> marks, Action forwardBackward)
    {
        Assert.NotEmpty(marks);
        var snapshots = new Snapshots();
        foreach (var mark in marks) mark.Listener = snapshots;
        try
        {
            forwardBackward();
        }
        finally
        {
            foreach (var mark in marks) mark.Listener = null;
        }
        for (var m = 0; m < marks.Count; m++)
        {
            Assert.True(snapshots.AtMark.TryGetValue(marks[m], out var atMark), $"backward never reached mark {m}");
            for (var i = 0; i < marks[m].Parameters.Count; i++)
            {
                using var final = marks[m].Parameters[i].grad;
                Assert.True(final is not null, $"mark {m}, parameter {i}: no gradient");
                Assert.True(atMark![i] is not null && atMark[i]!.eq(final!).all().item<bool>(),
                    $"mark {m}, parameter {i}: its gradient changed after backward reached the mark");
            }
        }
    }

    [Fact]
    public void GPT_blocks_are_complete_when_backward_reaches_them()
    {
        using var scope = NewDisposeScope();
        using var gpt = new Gpt(new TransformerModel(Layers: 3, Heads: 2, Width: 16, Context: 8, Dropout: 0), seed: 1);
        var inputs = randint(0, 256, [2, 8], dtype: int64);
        var targets = randint(0, 256, [2, 8], dtype: int64);
        AssertCompleteAtEveryMark(gpt.GradientMarks, () => gpt.Loss(inputs, targets).backward());
    }

    [Fact]
    public void BERT_blocks_are_complete_when_backward_reaches_them()
    {
        using var scope = NewDisposeScope();
        using var bert = new Bert(new TransformerModel(Layers: 2, Heads: 2, Width: 16, Context: 8, Dropout: 0), seed: 1);
        var inputs = randint(0, 256, [2, 8], dtype: int64);
        AssertCompleteAtEveryMark(bert.GradientMarks, () => bert.forward(inputs).square().mean().backward());
    }

    [Fact]
    public void MAE_encoder_and_decoder_blocks_are_complete_when_backward_reaches_them()
    {
        using var scope = NewDisposeScope();
        using var mae = new MaskedAutoencoder(new VisionTransformerModel(PatchSize: 4, Layers: 2, Heads: 4, Width: 32),
            new MaeOptions(MaskRatio: 0.75, DecoderWidth: 16, DecoderLayers: 2, DecoderHeads: 2, NormPixLoss: true), channels: 1, imageSize: 16, seed: 1);
        var images = rand(3, 1, 16, 16);
        var (visible, masked, restore) = new PatchMasking(16, 0.75, seed: 1).Collate([0, 1, 2], 0);
        Assert.Equal(4, mae.GradientMarks.Count);
        AssertCompleteAtEveryMark(mae.GradientMarks, () => mae.Losses(images, visible, masked, restore).mean().backward());
    }

    [Fact]
    public void ResNet_blocks_and_the_projection_head_are_complete_when_backward_reaches_them()
    {
        using var scope = NewDisposeScope();
        using var network = new ContrastiveNetwork(new VisionModel("resnet18", ProjectionHidden: 32, ProjectionDim: 16), inputChannels: 1, headBatchNorm: true);
        var images = rand(4, 1, 8, 8);
        Assert.Equal(9, network.GradientMarks.Count);                           // eight blocks, then the head
        AssertCompleteAtEveryMark(network.GradientMarks, () => network.forward(images).square().sum().backward());
    }

    [Fact]
    public void A_placed_mark_leaves_the_forward_pass_as_it_was()
    {
        using var scope = NewDisposeScope();
        using var gpt = new Gpt(new TransformerModel(Layers: 2, Heads: 2, Width: 16, Context: 8, Dropout: 0), seed: 1);
        var inputs = randint(0, 256, [2, 8], dtype: int64);
        var plain = gpt.forward(inputs);
        var snapshots = new Snapshots();
        foreach (var mark in gpt.GradientMarks) mark.Listener = snapshots;
        var marked = gpt.forward(inputs);
        Assert.True(plain.eq(marked).all().item<bool>(), "a mark changed the forward pass");
    }
}
