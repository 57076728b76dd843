using Pretrain.Shared.Recipes;
using Pretrain.Worker.Models.Layers;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Pretrain.Worker.Models.Vision;

/// <summary>
/// A Vision Transformer encoder (Dosovitskiy et al. 2021) in MAE's form: square patches, a linear patch embedding, fixed
/// 2-D sin-cos positions (a buffer, not trained), pre-LayerNorm blocks — BERT's bidirectional <see cref="GptBlock"/> — and
/// a final LayerNorm; no class token. It encodes any subset of an image's patches (MAE shows it only the visible quarter),
/// each token carrying its own patch's position. Parameter names: <c>patchEmbedding.*</c>, <c>blocks.N.*</c>,
/// <c>finalNorm.*</c>, and the buffer <c>positions</c>.
/// </summary>
public sealed class VisionTransformer : Module<Tensor, Tensor>
{
    private readonly Linear patchEmbedding;        // (p·p·C → d)
    private readonly Tensor positions;             // (N, d): fixed sin-cos, registered as a buffer
    private readonly ModuleList<GptBlock> blocks;
    private readonly LayerNorm finalNorm;

    public VisionTransformerModel Shape { get; }

    /// <summary>Patches per side of the (square) image.</summary>
    public int Grid { get; }

    /// <summary>Values per patch: p·p·C.</summary>
    public int PatchValues { get; }

    /// <summary>Width of <see cref="Features"/>: the tokens averaged over a g×g grid of image regions (<c>model.feature_grid</c>), g²d.</summary>
    public int FeatureSize => Shape.FeatureGrid * Shape.FeatureGrid * Shape.Width;

    public VisionTransformer(VisionTransformerModel shape, int channels, int imageSize, long seed) : base(nameof(VisionTransformer))
    {
        if (imageSize % shape.PatchSize != 0)
            throw new ArgumentException($"{imageSize}-px images do not split into {shape.PatchSize}-px patches");
        Shape = shape;
        Grid = imageSize / shape.PatchSize;
        PatchValues = shape.PatchSize * shape.PatchSize * channels;
        var block = new TransformerModel(shape.Layers, shape.Heads, shape.Width, Context: Grid * Grid, Dropout: 0);
        patchEmbedding = Linear(PatchValues, shape.Width);
        positions = Patches.SinCosPositions(Grid, shape.Width).DetachFromDisposeScope();
        blocks = new ModuleList<GptBlock>(Enumerable.Range(0, shape.Layers).Select(_ => new GptBlock(block, causal: false)).ToArray());
        finalNorm = LayerNorm(shape.Width);
        RegisterComponents();
        Gpt.InitializeTransformer(named_parameters(), shape.Layers, seed);
        InitializePatchEmbedding(seed);
    }

    /// <summary>The blocks' marks (<see cref="GradientMark"/>), in forward order; the patch embedding and the final norm are not covered.</summary>
    public IReadOnlyList<GradientMark> GradientMarks => [.. blocks.Select(b => b.Mark)];

    /// <summary>Images (B, C, H, W) → <see cref="Features"/> (B, g²d): what the bare encoder gives a probe.</summary>
    public override Tensor forward(Tensor images) => Features(images);

    /// <summary>
    /// Patches (B, N, p·p·C) → tokens after the final norm: of the patches <paramref name="visible"/> (B, K) int64, (B, K, d),
    /// or of every patch when it is null, (B, N, d).
    /// </summary>
    public Tensor Encode(Tensor patches, Tensor? visible)
    {
        using var scope = NewDisposeScope();
        return finalNorm.forward(Blocks(patches, visible)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The representation a probe sees, (B, g²d): every patch encoded (no masking), the last block's tokens averaged over
    /// a g×g grid of image regions (<c>model.feature_grid</c>) and concatenated. Not one global mean: on 28-px images the coarse layout (top/bottom,
    /// left/right) is much of what tells a shirt from a bag (a globally pooled CNN trailed raw pixels where its 2×2 grid did
    /// not; see <see cref="SmallCnn"/>). Before the final norm, as MAE's global-pool probe (which then normalises the
    /// pooled vector — the linear probe standardises features anyway).
    /// </summary>
    public Tensor Features(Tensor images)
    {
        using var scope = NewDisposeScope();
        var tokens = Blocks(Patches.Patchify(images, Shape.PatchSize), null);              // (B, N, d)
        var grid = tokens.transpose(1, 2).reshape(tokens.shape[0], Shape.Width, Grid, Grid); // (B, d, g, g)
        return functional.adaptive_avg_pool2d(grid, [Shape.FeatureGrid, Shape.FeatureGrid]).flatten(1).MoveToOuterDisposeScope(); // (B, d·g·g)
    }

    /// <summary>
    /// The patch embedding as MAE initialises it, Xavier-uniform like a dense layer, not N(0, 0.02): a 4-px patch has 16
    /// values in [0, 1], so 0.02 would start its content at ~1/20 of the unit-scale positions added to it (Xavier: ~1/4).
    /// </summary>
    private void InitializePatchEmbedding(long seed)
    {
        using var generator = new Generator((ulong)seed ^ 0x5061_7463_6845_6D62UL); // "PatchEmb": apart from the blocks' draws
        using var noGrad = no_grad();
        var bound = Math.Sqrt(6.0 / (PatchValues + Shape.Width));
        patchEmbedding.weight!.uniform_(-bound, bound, generator);
    }

    /// <summary>The chosen patches embedded, their positions added, through the blocks: (B, K or N, d), before the final norm.</summary>
    private Tensor Blocks(Tensor patches, Tensor? visible)
    {
        long b = patches.shape[0], values = patches.shape[2];
        Tensor x, position;
        if (visible is null)
            (x, position) = (patches, positions);                                           // (B, N, P), (N, d)
        else
        {
            long k = visible.shape[1];
            x = patches.gather(1, visible.unsqueeze(-1).expand(b, k, values));               // (B, K, P)
            position = positions.index_select(0, visible.reshape(-1)).view(b, k, Shape.Width); // (B, K, d)
        }
        x = patchEmbedding.forward(x) + position;                                           // (B, K, d)
        foreach (var block in blocks)
            x = block.forward(x);
        return x;
    }
}
