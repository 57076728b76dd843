using Pretrain.Data.Collators;
using Pretrain.Shared.Recipes;
using Pretrain.Worker.Models.Vision;
using Xunit;
using static TorchSharp.torch;

namespace Pretrain.Tests.Methods;

public class MaskedAutoencoderTests
{
    static readonly VisionTransformerModel Shape = new(PatchSize: 4, Layers: 2, Heads: 4, Width: 64);
    static readonly MaeOptions Options = new(MaskRatio: 0.75, DecoderWidth: 32, DecoderLayers: 1, DecoderHeads: 2, NormPixLoss: true);
    const int N = 49, K = 12, M = 37, P = 16; // 28-px greyscale images in 4-px patches: 49 patches of 16 values, 12 visible

    [Fact]
    public void Patchify_lays_patches_out_row_major_and_unpatchify_inverts_it()
    {
        using var scope = NewDisposeScope();
        var images = randn(2, 3, 28, 28);
        var patches = Patches.Patchify(images, 4);                                   // (2, 49, 4·4·3)
        Assert.Equal(new long[] { 2, N, 48 }, patches.shape);
        // Patch 1 is row 0, column 1 of the grid; patch 7 is row 1, column 0. Values in (row, column, channel) order.
        Assert.Equal(images[1, 2, 2, 4 + 3].item<float>(), patches[1, 1, (2 * 4 + 3) * 3 + 2].item<float>());
        Assert.Equal(images[0, 1, 4 + 3, 0].item<float>(), patches[0, 7, (3 * 4 + 0) * 3 + 1].item<float>());
        Assert.True(Patches.Unpatchify(patches, 4, 3, 28, 28).eq(images).all().item<bool>(), "unpatchify(patchify(x)) is not x");
    }

    [Fact]
    public void Sin_cos_positions_encode_the_row_in_the_first_half_and_the_column_in_the_second()
    {
        using var positions = Patches.SinCosPositions(grid: 7, width: 64);                // (49, 64)
        Assert.Equal(new long[] { N, 64 }, positions.shape);
        Assert.True(positions[0].narrow(0, 0, 32).eq(positions[6].narrow(0, 0, 32)).all().item<bool>(), "patches 0 and 6 share row 0");
        Assert.True(positions[0].narrow(0, 32, 32).eq(positions[42].narrow(0, 32, 32)).all().item<bool>(), "patches 0 and 42 share column 0");
        Assert.False(positions[8].eq(positions[9]).all().item<bool>());
        Assert.True(positions.abs().max().item<float>() <= 1f);
        // No two patches share a position.
        using var scope = NewDisposeScope();
        var distances = (positions.unsqueeze(1) - positions.unsqueeze(0)).square().sum(-1L) + eye(N) * 10; // (49, 49), the diagonal lifted
        Assert.True(distances.min().item<float>() > 0.01f);
    }

    [Fact]
    public void The_loss_is_zero_for_a_perfect_reconstruction_of_the_hidden_patches_whatever_is_predicted_for_the_visible_ones()
    {
        using var scope = NewDisposeScope();
        var patches = rand(2, N, P);
        var (visible, masked, _) = new PatchMasking(N, 0.75, seed: 1).Collate([0, 1], step: 0);
        var onVisible = zeros(2, N).scatter(1, visible, ones(2, K)).unsqueeze(-1);        // (2, N, 1): 1 at visible patches
        var predicted = MaskedAutoencoder.NormalisedPixels(patches) + onVisible * 100;     // perfect where hidden, far off where visible

        var loss = MaskedAutoencoder.ReconstructionLoss(predicted, patches, masked, normalise: true);   // (2)
        Assert.Equal(new long[] { 2 }, loss.shape);
        Assert.True(loss.abs().max().item<float>() < 1e-6f, $"loss {loss[0].item<float>()}, {loss[1].item<float>()}");

        // One hidden patch of sample 0 off by 1 in each of its 16 values: that sample's loss is 1 over its 37 hidden patches.
        var delta = zeros(2, N, P);
        delta[0, masked[0, 5].item<long>()] = ones(P);
        var off = MaskedAutoencoder.ReconstructionLoss(predicted + delta, patches, masked, normalise: true);
        Assert.Equal(1.0 / M, off[0].item<float>(), 5);
        Assert.Equal(0.0, off[1].item<float>(), 5);

        // Without normalisation the target is the pixels themselves.
        Assert.True(MaskedAutoencoder.ReconstructionLoss(patches, patches, masked, normalise: false).abs().max().item<float>() == 0f);
    }

    [Fact]
    public void Normalised_pixels_have_zero_mean_and_unit_variance_per_patch()
    {
        using var scope = NewDisposeScope();
        var patches = rand(4, N, P) * 3 + 2;
        var normalised = MaskedAutoencoder.NormalisedPixels(patches);
        Assert.True(normalised.mean([-1L]).abs().max().item<float>() < 1e-5f);
        Assert.True((normalised.var(-1L) - 1).abs().max().item<float>() < 1e-4f);
    }

    [Fact]
    public void The_encoder_sees_only_the_visible_patches()
    {
        using var scope = NewDisposeScope();
        using var encoder = new VisionTransformer(Shape, channels: 1, imageSize: 28, seed: 1);
        var patches = rand(2, N, P);
        var (visible, masked, _) = new PatchMasking(N, 0.75, seed: 1).Collate([0, 1], step: 0);
        using var noGrad = no_grad();
        var latent = encoder.Encode(patches, visible);                                     // (2, 12, 64)
        Assert.Equal(new long[] { 2, K, 64 }, latent.shape);

        var hidden = patches.clone();
        hidden[0, masked[0, 0].item<long>()] = ones(P) * 7;                                // repaint a hidden patch
        Assert.True(encoder.Encode(hidden, visible).allclose(latent, rtol: 0, atol: 0), "a hidden patch reached the encoder");
        var shown = patches.clone();
        shown[0, visible[0, 0].item<long>()] = ones(P) * 7;                                // repaint a visible one
        Assert.False(encoder.Encode(shown, visible).allclose(latent), "a visible patch did not reach the encoder");
    }

    [Fact]
    public void Features_cover_the_whole_image_on_a_2x2_grid_of_regions_and_do_not_depend_on_masks_or_the_batch()
    {
        using var scope = NewDisposeScope();
        using var model = new MaskedAutoencoder(Shape, Options, channels: 1, imageSize: 28, seed: 1);
        model.eval();
        var images = rand(3, 1, 28, 28);
        using var noGrad = no_grad();
        var features = model.Features(images);
        Assert.Equal(new long[] { 3, 4 * 64 }, features.shape);
        Assert.Equal(4 * 64, model.FeatureSize);
        Assert.True(model.Features(images.narrow(0, 2, 1)).allclose(features.narrow(0, 2, 1), rtol: 1e-4, atol: 1e-5), "an image's features depend on its batch");

        var masking = new PatchMasking(N, 0.75, seed: 1);
        foreach (var step in new long[] { 0, 1 })
        {
            var (visible, masked, restore) = masking.Collate([0, 1, 2], step);
            model.Losses(images, visible, masked, restore);
            Assert.True(model.Features(images).eq(features).all().item<bool>(), $"features changed after the masks of step {step}");
        }
        Assert.False(features[0].allclose(features[1]), "two images, the same features");
    }

    [Fact]
    public void Only_the_dense_layers_matrices_decay_and_the_positions_are_fixed_buffers()
    {
        using var model = new MaskedAutoencoder(Shape, Options, channels: 1, imageSize: 28, seed: 1);
        var parameters = model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        var decayed = parameters.Where(p => MaskedAutoencoder.UsesWeightDecay(p.Key, p.Value)).Select(p => p.Key).ToHashSet();

        Assert.Contains("encoder.patchEmbedding.weight", decayed);
        Assert.Contains("encoder.blocks.0.attention.weight", decayed);
        Assert.Contains("decoder.prediction.weight", decayed);
        Assert.DoesNotContain("decoder.maskToken", decayed);
        Assert.Contains("decoder.maskToken", parameters.Keys);
        Assert.All(decayed, name => Assert.EndsWith(".weight", name));
        Assert.All(decayed, name => Assert.DoesNotContain("Norm", name));
        Assert.All(parameters.Keys, name => Assert.True(name.StartsWith("encoder.", StringComparison.Ordinal) || name.StartsWith("decoder.", StringComparison.Ordinal), name));

        var buffers = model.named_buffers().Select(b => b.name).Order(StringComparer.Ordinal).ToArray();
        Assert.Equal(new[] { "decoder.positions", "encoder.positions" }, buffers);
        Assert.DoesNotContain("encoder.positions", parameters.Keys);
    }

    [Fact]
    public void A_seed_gives_the_same_initial_weights()
    {
        using var a = new MaskedAutoencoder(Shape, Options, channels: 1, imageSize: 28, seed: 3);
        using var b = new MaskedAutoencoder(Shape, Options, channels: 1, imageSize: 28, seed: 3);
        using var c = new MaskedAutoencoder(Shape, Options, channels: 1, imageSize: 28, seed: 4);
        var (pa, pb, pc) = (a.named_parameters().ToArray(), b.named_parameters().ToArray(), c.named_parameters().ToArray());
        for (var i = 0; i < pa.Length; i++)
            Assert.True(pa[i].parameter.eq(pb[i].parameter).all().item<bool>(), pa[i].name);
        Assert.Contains(Enumerable.Range(0, pa.Length), i => !pa[i].parameter.eq(pc[i].parameter).all().item<bool>());
    }
}
