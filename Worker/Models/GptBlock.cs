using Pretrain.Shared.Recipes;
using Pretrain.Worker.Models.Layers;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Pretrain.Worker.Models;

/// <summary>
/// One pre-LayerNorm transformer block: x + attn(ln(x)), then x + mlp(ln(x)). Causal attention for GPT;
/// bidirectional for BERT's encoder (the only difference between the two blocks).
/// </summary>
public sealed class GptBlock : Module<Tensor, Tensor>
{
    private readonly LayerNorm attentionNorm;
    private readonly Linear attention;           // (C → 3C): query, key, value in one matmul
    private readonly Linear attentionProjection; // (C → C), a residual projection (scaled init)
    private readonly LayerNorm mlpNorm;
    private readonly Linear mlpExpand;           // (C → 4C)
    private readonly Linear mlpProjection;       // (4C → C), a residual projection (scaled init)
    private readonly int heads;
    private readonly double dropout;
    private readonly bool causal;

    public GptBlock(TransformerModel shape, bool causal = true) : base(nameof(GptBlock))
    {
        this.causal = causal;
        heads = shape.Heads;
        dropout = shape.Dropout;
        attentionNorm = LayerNorm(shape.Width);
        attention = Linear(shape.Width, 3 * shape.Width);
        attentionProjection = Linear(shape.Width, shape.Width);
        mlpNorm = LayerNorm(shape.Width);
        mlpExpand = Linear(shape.Width, 4 * shape.Width);
        mlpProjection = Linear(4 * shape.Width, shape.Width);
        RegisterComponents();
        Mark = new GradientMark(parameters());
    }

    /// <summary>The block's input: once backward is back there, the block's parameters have their whole gradient.</summary>
    public GradientMark Mark { get; }

    /// <summary>(B, T, C) → (B, T, C).</summary>
    public override Tensor forward(Tensor x)
    {
        x = Mark.Pass(x);
        x = x + Gpt.Dropout(attentionProjection.forward(SelfAttention(attentionNorm.forward(x))), dropout, training);
        var hidden = functional.gelu(mlpExpand.forward(mlpNorm.forward(x)));  // (B, T, 4C)
        return x + Gpt.Dropout(mlpProjection.forward(hidden), dropout, training);
    }

    private Tensor SelfAttention(Tensor x)
    {
        long b = x.shape[0], t = x.shape[1], c = x.shape[2];
        var qkv = attention.forward(x).view(b, t, 3, heads, c / heads);       // (B, T, 3, nh, hs)
        qkv = qkv.permute(2, 0, 3, 1, 4);                                     // (3, B, nh, T, hs)
        var (q, k, v) = (qkv[0], qkv[1], qkv[2]);                            // (B, nh, T, hs) each
        var y = functional.scaled_dot_product_attention(q, k, v, is_casual: causal); // (B, nh, T, hs)
        return y.transpose(1, 2).contiguous().view(b, t, c);                 // (B, T, C)
    }
}
