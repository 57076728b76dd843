using Pretrain.Shared.Recipes;
using Pretrain.Worker.Models.Layers;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Pretrain.Worker.Models;

/// <summary>
/// A BERT encoder: token + position embeddings, pre-LayerNorm blocks of <b>bidirectional</b>
/// self-attention (GPT's block without the causal mask), a final LayerNorm, and BERT's MLM head — a
/// dense layer, GELU and LayerNorm, then a decoder tied to the token embedding plus its own bias.
/// On raw text the vocabulary is 257: the 256 byte values and [MASK] = 256 (fixed-length windows need
/// no [CLS] or [PAD]: no next-sentence task, no padding). On prepared token shards it is the
/// tokenizer's, whose [MASK] and [SEP] (between documents) come with it.
/// </summary>
public sealed class Bert : Module<Tensor, Tensor>
{
    public const int ByteVocabulary = 257;
    public const int ByteMaskId = 256;

    private readonly Embedding tokenEmbedding;    // (V, C); also the MLM decoder (weight tying)
    private readonly Embedding positionEmbedding; // (T, C)
    private readonly ModuleList<GptBlock> blocks;
    private readonly LayerNorm finalNorm;
    private readonly Linear headDense;            // (C → C)
    private readonly LayerNorm headNorm;
    private readonly Parameter bias;              // (V): the decoder's own bias
    private readonly double dropout;

    public int Vocabulary { get; }

    public Bert(TransformerModel shape, long seed, int vocabulary = ByteVocabulary) : base(nameof(Bert))
    {
        Vocabulary = vocabulary;
        dropout = shape.Dropout;
        tokenEmbedding = Embedding(vocabulary, shape.Width);
        positionEmbedding = Embedding(shape.Context, shape.Width);
        blocks = new ModuleList<GptBlock>(Enumerable.Range(0, shape.Layers).Select(_ => new GptBlock(shape, causal: false)).ToArray());
        finalNorm = LayerNorm(shape.Width);
        headDense = Linear(shape.Width, shape.Width);
        headNorm = LayerNorm(shape.Width);
        bias = Parameter(zeros(vocabulary));
        RegisterComponents();
        Gpt.InitializeTransformer(named_parameters(), shape.Layers, seed);
    }

    /// <summary>The blocks' marks (<see cref="GradientMark"/>), in forward order; the embeddings and norms around them are not covered.</summary>
    public IReadOnlyList<GradientMark> GradientMarks => [.. blocks.Select(b => b.Mark)];

    /// <summary>Token ids (B, T) → logits (B, T, V).</summary>
    public override Tensor forward(Tensor idx)
    {
        using var scope = NewDisposeScope();
        using var positions = arange(idx.shape[1], dtype: ScalarType.Int64);
        var x = Gpt.Dropout(tokenEmbedding.forward(idx) + positionEmbedding.forward(positions), dropout, training); // (B, T, C)
        foreach (var block in blocks)
            x = block.forward(x);
        var h = headNorm.forward(functional.gelu(headDense.forward(finalNorm.forward(x))));
        return functional.linear(h, tokenEmbedding.weight!, bias).MoveToOuterDisposeScope(); // (B, T, V), tied decoder
    }

    /// <summary>
    /// Cross-entropy over the masked positions only (labels −100 elsewhere are ignored), and how many of
    /// them the argmax predicts right: (loss, correct, masked) with loss a scalar tensor.
    /// </summary>
    public (Tensor Loss, long Correct, long Masked) MaskedLoss(Tensor inputs, Tensor labels)
    {
        using var scope = NewDisposeScope();
        var logits = forward(inputs).view(-1, Vocabulary);                         // (B·T, V)
        var flat = labels.reshape(-1);
        var loss = functional.cross_entropy(logits, flat, ignore_index: -100);
        using var noGrad = no_grad();
        using var ignored = (-100).ToScalar();   // explicit: an implicit Scalar may be finalized mid-call (see GlobalBatchNorm2d)
        var masked = flat.ne(ignored);
        var correct = logits.argmax(1).eq(flat).logical_and(masked).sum().item<long>();
        return (loss.MoveToOuterDisposeScope(), correct, masked.sum().item<long>());
    }

    /// <summary>As GPT: only the matrices of Linear layers decay (not biases, LayerNorms or embeddings).</summary>
    public static bool UsesWeightDecay(string name, Tensor parameter) =>
        parameter.dim() >= 2 && !name.StartsWith(nameof(tokenEmbedding), StringComparison.Ordinal)
                             && !name.StartsWith(nameof(positionEmbedding), StringComparison.Ordinal);
}
