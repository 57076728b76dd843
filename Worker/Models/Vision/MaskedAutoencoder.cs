using Pretrain.Data.Collators;
using Pretrain.Shared.Recipes;
using Pretrain.Worker.Models.Layers;
using Pretrain.Worker.Training;
using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Pretrain.Worker.Models.Vision;

/// <summary>
/// A masked autoencoder (He et al. 2022): a <see cref="VisionTransformer"/> encoder that sees only each image's visible
/// patches, and a light <see cref="MaeDecoder"/> that reconstructs the pixels of the hidden ones. The loss is the mean
/// squared error over the hidden patches only — reconstructing what the encoder saw teaches nothing — of pixels
/// standardised per patch (MAE's norm_pix_loss, which the paper finds gives better features). Parameter names:
/// <c>encoder.*</c> (what evaluation and export use) and <c>decoder.*</c>.
/// </summary>
public sealed class MaskedAutoencoder : Module
{
    private readonly VisionTransformer encoder;
    private readonly MaeDecoder decoder;
    private readonly bool normPixLoss;

    public MaskedAutoencoder(VisionTransformerModel shape, MaeOptions options, int channels, int imageSize, long seed) : base(nameof(MaskedAutoencoder))
    {
        normPixLoss = options.NormPixLoss;
        encoder = new VisionTransformer(shape, channels, imageSize, seed);
        decoder = new MaeDecoder(shape.Width, options, encoder.Grid, encoder.PatchValues, seed + 1);
        RegisterComponents();
    }

    /// <summary>The encoder's marks, then the decoder's (<see cref="GradientMark"/>): forward order.</summary>
    public IReadOnlyList<GradientMark> GradientMarks => [.. encoder.GradientMarks, .. decoder.GradientMarks];

    /// <summary>Patches per image.</summary>
    public int PatchCount => encoder.Grid * encoder.Grid;

    /// <summary>Width of <see cref="Features"/>.</summary>
    public int FeatureSize => encoder.FeatureSize;

    /// <summary>
    /// Each sample's reconstruction loss, (B): <paramref name="images"/> (B, C, H, W) float, and its masks from
    /// <see cref="PatchMasking.Collate"/> — <paramref name="visible"/> (B, K), <paramref name="masked"/> (B, M) and
    /// <paramref name="restore"/> (B, N), int64.
    /// </summary>
    public Tensor Losses(Tensor images, Tensor visible, Tensor masked, Tensor restore)
    {
        using var scope = NewDisposeScope();
        var patches = Patches.Patchify(images, encoder.Shape.PatchSize);         // (B, N, p·p·C)
        var latent = encoder.Encode(patches, visible);                           // (B, K, d)
        var predicted = decoder.Reconstruct(latent, restore);                    // (B, N, p·p·C)
        return ReconstructionLoss(predicted, patches, masked, normPixLoss).MoveToOuterDisposeScope();
    }

    /// <summary>The encoder's representation of whole images (no patch hidden), (B, <see cref="FeatureSize"/>).</summary>
    public Tensor Features(Tensor images) => encoder.Features(images);

    /// <summary>
    /// Per sample, the mean over its <paramref name="masked"/> (B, M) patches of the mean squared error between
    /// <paramref name="predicted"/> and <paramref name="patches"/> (both (B, N, p·p·C)), the target standardised per patch
    /// when <paramref name="normalise"/>: (B). Visible patches do not count, whatever is predicted for them.
    /// </summary>
    public static Tensor ReconstructionLoss(Tensor predicted, Tensor patches, Tensor masked, bool normalise)
    {
        using var scope = NewDisposeScope();
        long b = patches.shape[0], m = masked.shape[1], values = patches.shape[2];
        var index = masked.unsqueeze(-1).expand(b, m, values);                  // (B, M, P)
        var target = patches.gather(1, index);                                   // (B, M, P)
        if (normalise)
            target = NormalisedPixels(target);
        var error = predicted.gather(1, index) - target;                         // (B, M, P)
        // pow(two), not square(): square() is pow(2) inside TorchSharp, an implicit int→Scalar that the finalizer may free
        // during the native call (see GlobalBatchNorm2d).
        using var two = 2.ToScalar();
        return error.pow(two).mean([1L, 2L]).MoveToOuterDisposeScope();          // (B): equal patches, so the mean of patch means
    }

    /// <summary>Each patch's pixels (…, P) minus their mean, over sqrt(unbiased variance + 1e-6), as MAE's norm_pix_loss.</summary>
    public static Tensor NormalisedPixels(Tensor patches)
    {
        using var scope = NewDisposeScope();
        var mean = patches.mean([-1L], keepdim: true);
        var variance = patches.var(-1L, keepdim: true);
        using var epsilon = 1e-6.ToScalar();   // explicit, as every number on the step's path (see GlobalBatchNorm2d)
        return ((patches - mean) / variance.add(epsilon).sqrt()).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Whether AdamW decays a parameter: the matrices of the dense layers only — not biases and LayerNorms (1-d), and not
    /// the mask token, a learned input like an embedding. The positions are buffers and never trained.
    /// </summary>
    public static bool UsesWeightDecay(string name, Tensor parameter) =>
        parameter.dim() >= 2 && !name.EndsWith("maskToken", StringComparison.Ordinal);

    /// <summary>
    /// Forward FLOPs of one image (dense layers and attention; norms and the loss are elementwise and not counted): the
    /// encoder on the K visible patches (patch embedding and blocks), the decoder's projection of those K tokens and its
    /// blocks and pixel prediction over all N.
    /// </summary>
    public static double ForwardFlops(VisionTransformerModel shape, MaeOptions options, int channels, int imageSize)
    {
        long grid = imageSize / shape.PatchSize, n = grid * grid, values = (long)shape.PatchSize * shape.PatchSize * channels;
        long k = PatchMasking.VisibleCount((int)n, options.MaskRatio), width = options.DecoderWidth;
        var encoderFlops = k * (ModelFlops.Linear(values, shape.Width) + shape.Layers * ModelFlops.TransformerBlockPerToken(shape.Width, k));
        var decoderFlops = k * ModelFlops.Linear(shape.Width, width)
                           + n * (options.DecoderLayers * ModelFlops.TransformerBlockPerToken(width, n) + ModelFlops.Linear(width, values));
        return encoderFlops + decoderFlops;
    }
}
