using Pretrain.Shared.Recipes;
using Pretrain.Worker.Models.Layers;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Pretrain.Worker.Models.Vision;

/// <summary>
/// MAE's light decoder (He et al. 2022, §3): the encoder's tokens of the visible patches projected to the decoder's width,
/// one learned mask token in the place of every hidden patch, fixed sin-cos positions of the whole grid, a few
/// bidirectional blocks, a final LayerNorm and a linear prediction of each patch's pixels. It exists only for
/// pretraining: evaluation and export use the encoder alone. Parameter names: <c>embedding.*</c>, <c>maskToken</c>,
/// <c>blocks.N.*</c>, <c>finalNorm.*</c>, <c>prediction.*</c>, and the buffer <c>positions</c>.
/// </summary>
public sealed class MaeDecoder : Module
{
    private readonly Linear embedding;         // (d → dd): encoder width to decoder width
    private readonly Parameter maskToken;      // (1, 1, dd): shared by every hidden patch, told apart by its position
    private readonly Tensor positions;         // (N, dd): fixed sin-cos, registered as a buffer
    private readonly ModuleList<GptBlock> blocks;
    private readonly LayerNorm finalNorm;
    private readonly Linear prediction;        // (dd → p·p·C): the patch's pixels

    private readonly int width;

    /// <param name="grid">Patches per side of the image.</param>
    /// <param name="patchValues">Values per patch, p·p·C: what each token predicts.</param>
    public MaeDecoder(int encoderWidth, MaeOptions options, int grid, int patchValues, long seed) : base(nameof(MaeDecoder))
    {
        width = options.DecoderWidth;
        var block = new TransformerModel(options.DecoderLayers, options.DecoderHeads, width, Context: grid * grid, Dropout: 0);
        embedding = Linear(encoderWidth, width);
        maskToken = Parameter(zeros(1, 1, width).DetachFromDisposeScope());
        positions = Patches.SinCosPositions(grid, width).DetachFromDisposeScope();
        blocks = new ModuleList<GptBlock>(Enumerable.Range(0, options.DecoderLayers).Select(_ => new GptBlock(block, causal: false)).ToArray());
        finalNorm = LayerNorm(width);
        prediction = Linear(width, patchValues);
        RegisterComponents();
        Gpt.InitializeTransformer(named_parameters(), options.DecoderLayers, seed); // the mask token too: N(0, 0.02), as MAE
    }

    /// <summary>The blocks' marks (<see cref="GradientMark"/>), in forward order; the embedding, mask token, final norm and prediction are not covered.</summary>
    public IReadOnlyList<GradientMark> GradientMarks => [.. blocks.Select(b => b.Mark)];

    /// <summary>
    /// <paramref name="latent"/> (B, K, d), the encoder's tokens of each sample's visible patches in the order of its row of
    /// <paramref name="restore"/> (B, N) int64 — which gives each patch's place in [visible…, hidden…] — → the predicted
    /// pixels of every patch, (B, N, p·p·C), in patch order.
    /// </summary>
    public Tensor Reconstruct(Tensor latent, Tensor restore)
    {
        using var scope = NewDisposeScope();
        long b = latent.shape[0], k = latent.shape[1], n = restore.shape[1];
        var visible = embedding.forward(latent);                                            // (B, K, dd)
        var tokens = cat([visible, maskToken.expand(b, n - k, width)], 1);                 // (B, N, dd): visible, then hidden
        tokens = tokens.gather(1, restore.unsqueeze(-1).expand(b, n, width)) + positions;  // (B, N, dd) in patch order
        foreach (var block in blocks)
            tokens = block.forward(tokens);
        return prediction.forward(finalNorm.forward(tokens)).MoveToOuterDisposeScope();   // (B, N, p·p·C)
    }
}
