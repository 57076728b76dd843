using Pretrain.Shared.Recipes;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Pretrain.Worker.Models;

/// <summary>
/// A byte-level BERT encoder: token + position embeddings, pre-LayerNorm blocks of <b>bidirectional</b>
/// self-attention (GPT's block without the causal mask), a final LayerNorm, and BERT's MLM head — a
/// dense layer, GELU and LayerNorm, then a decoder tied to the token embedding plus its own bias.
/// Vocabulary 257: the 256 byte values and [MASK] = 256. Fixed-length windows of text need no [CLS],
/// [SEP] or [PAD] (no next-sentence task, no padding), so there are none.
/// </summary>
public sealed class Bert : Module<Tensor, Tensor>
{
    public const int Vocabulary = 257;
    public const int MaskId = 256;

    private readonly Embedding tokenEmbedding;    // (257, C); also the MLM decoder (weight tying)
    private readonly Embedding positionEmbedding; // (T, C)
    private readonly ModuleList<GptBlock> blocks;
    private readonly LayerNorm finalNorm;
    private readonly Linear headDense;            // (C → C)
    private readonly LayerNorm headNorm;
    private readonly Parameter bias;              // (257): the decoder's own bias
    private readonly double dropout;

    public Bert(TransformerModel shape, long seed) : base(nameof(Bert))
    {
        dropout = shape.Dropout;
        tokenEmbedding = Embedding(Vocabulary, shape.Width);
        positionEmbedding = Embedding(shape.Context, shape.Width);
        blocks = new ModuleList<GptBlock>(Enumerable.Range(0, shape.Layers).Select(_ => new GptBlock(shape, causal: false)).ToArray());
        finalNorm = LayerNorm(shape.Width);
        headDense = Linear(shape.Width, shape.Width);
        headNorm = LayerNorm(shape.Width);
        bias = Parameter(zeros(Vocabulary));
        RegisterComponents();
        Gpt.InitializeTransformer(named_parameters(), shape.Layers, seed);
    }

    /// <summary>Token ids (B, T) → logits (B, T, 257).</summary>
    public override Tensor forward(Tensor idx)
    {
        using var scope = NewDisposeScope();
        using var positions = arange(idx.shape[1], dtype: ScalarType.Int64);
        var x = Gpt.Dropout(tokenEmbedding.forward(idx) + positionEmbedding.forward(positions), dropout, training); // (B, T, C)
        foreach (var block in blocks)
            x = block.forward(x);
        var h = headNorm.forward(functional.gelu(headDense.forward(finalNorm.forward(x))));
        return functional.linear(h, tokenEmbedding.weight!, bias).MoveToOuterDisposeScope(); // (B, T, 257), tied decoder
    }

    /// <summary>
    /// Cross-entropy over the masked positions only (labels −100 elsewhere are ignored), and how many of
    /// them the argmax predicts right: (loss, correct, masked) with loss a scalar tensor.
    /// </summary>
    public (Tensor Loss, long Correct, long Masked) MaskedLoss(Tensor inputs, Tensor labels)
    {
        using var scope = NewDisposeScope();
        var logits = forward(inputs).view(-1, Vocabulary);                         // (B·T, 257)
        var flat = labels.reshape(-1);
        var loss = functional.cross_entropy(logits, flat, ignore_index: -100);
        using var noGrad = no_grad();
        var masked = flat.ne(-100);
        var correct = logits.argmax(1).eq(flat).logical_and(masked).sum().item<long>();
        return (loss.MoveToOuterDisposeScope(), correct, masked.sum().item<long>());
    }

    /// <summary>As GPT: only the matrices of Linear layers decay (not biases, LayerNorms or embeddings).</summary>
    public static bool UsesWeightDecay(string name, Tensor parameter) =>
        parameter.dim() >= 2 && !name.StartsWith(nameof(tokenEmbedding), StringComparison.Ordinal)
                             && !name.StartsWith(nameof(positionEmbedding), StringComparison.Ordinal);
}
