using Pretrain.Shared.Recipes;
using Pretrain.Worker.Models.Layers;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Pretrain.Worker.Models;

/// <summary>
/// A GPT in nanoGPT's shape: token + position embeddings, pre-LayerNorm blocks of causal self-attention
/// and a GELU MLP, a final LayerNorm and an LM head tied to the token embedding. Its vocabulary is the
/// corpus's: 256 for raw bytes, the (compact) tokenizer's for prepared token shards.
/// Parameter names (the checkpoint's tensor names) come from the field names below.
/// </summary>
public sealed class Gpt : Module<Tensor, Tensor>
{
    public const int ByteVocabulary = 256; // raw text: bytes are the tokens

    private readonly Embedding tokenEmbedding;    // (V, C); also the LM head (weight tying)
    private readonly Embedding positionEmbedding; // (T, C)
    private readonly ModuleList<GptBlock> blocks;
    private readonly LayerNorm finalNorm;
    private readonly double dropout;

    public TransformerModel Shape { get; }
    public int Vocabulary { get; }

    public Gpt(TransformerModel shape, long seed, int vocabulary = ByteVocabulary) : base(nameof(Gpt))
    {
        Shape = shape;
        Vocabulary = vocabulary;
        dropout = shape.Dropout;
        tokenEmbedding = Embedding(vocabulary, shape.Width);
        positionEmbedding = Embedding(shape.Context, shape.Width);
        blocks = new ModuleList<GptBlock>(Enumerable.Range(0, shape.Layers).Select(_ => new GptBlock(shape)).ToArray());
        finalNorm = LayerNorm(shape.Width);
        RegisterComponents();
        Initialize(seed);
    }

    /// <summary>The blocks' marks (<see cref="GradientMark"/>), in forward order; the embeddings and norms around them are not covered.</summary>
    public IReadOnlyList<GradientMark> GradientMarks => [.. blocks.Select(b => b.Mark)];

    /// <summary>Token ids (B, T) → logits (B, T, V).</summary>
    public override Tensor forward(Tensor idx)
    {
        var t = idx.shape[1];
        using var positions = arange(t, dtype: ScalarType.Int64);         // (T,)
        var x = tokenEmbedding.forward(idx) + positionEmbedding.forward(positions); // (B, T, C)
        x = Dropout(x, dropout, training);
        foreach (var block in blocks)
            x = block.forward(x);                                          // (B, T, C)
        x = finalNorm.forward(x);
        return functional.linear(x, tokenEmbedding.weight!);              // (B, T, V), tied head
    }

    /// <summary>Mean cross-entropy of predicting <paramref name="targets"/> (B, T) from <paramref name="inputs"/> (B, T).</summary>
    public Tensor Loss(Tensor inputs, Tensor targets)
    {
        var logits = forward(inputs);                                      // (B, T, V)
        return functional.cross_entropy(logits.view(-1, Vocabulary), targets.reshape(-1)); // targets may be a strided view
    }

    /// <summary>
    /// Whether AdamW decays a parameter: only the matrices of Linear layers. Biases, LayerNorm gains and
    /// biases, and the embeddings (token/LM head and position) are not decayed — decaying a LayerNorm gain
    /// pulls it towards zero and fights the normalisation; embeddings are looked up sparsely.
    /// </summary>
    public static bool UsesWeightDecay(string name, Tensor parameter) =>
        parameter.dim() >= 2 && !name.StartsWith(nameof(tokenEmbedding), StringComparison.Ordinal)
                             && !name.StartsWith(nameof(positionEmbedding), StringComparison.Ordinal);

    /// <summary>nanoGPT's init of a transformer's parameters; see <see cref="Initialize"/>.</summary>
    internal static void InitializeTransformer(IEnumerable<(string name, Parameter parameter)> parameters, int layers, long seed)
    {
        using var generator = new Generator((ulong)seed);
        using var noGrad = no_grad();
        var residualStd = 0.02 / Math.Sqrt(2.0 * layers);
        foreach (var (name, p) in parameters.OrderBy(n => n.name, StringComparer.Ordinal))
        {
            if (name.Contains("Norm", StringComparison.Ordinal))
                continue; // LayerNorm keeps weight 1, bias 0
            if (name.EndsWith(".bias", StringComparison.Ordinal) || name == "bias")
                init.zeros_(p);
            else
                // Tensor.normal_ honours the generator; nn.init.normal_ in TorchSharp 0.107 ignores it.
                p.normal_(0, name.EndsWith("Projection.weight", StringComparison.Ordinal) ? residualStd : 0.02, generator);
        }
    }

    internal static Tensor Dropout(Tensor x, double p, bool training) =>
        p > 0 && training ? functional.dropout(x, p, training) : x;

    /// <summary>
    /// nanoGPT's init from one generator seeded with <paramref name="seed"/>: N(0, 0.02) for matrices and
    /// embeddings, residual projections scaled by 1/sqrt(2·layers) (GPT-2), zero biases, LayerNorm at 1/0.
    /// Parameters are visited by name in ordinal order so the result does not depend on field reflection order.
    /// </summary>
    private void Initialize(long seed) => InitializeTransformer(named_parameters(), Shape.Layers, seed);
}
