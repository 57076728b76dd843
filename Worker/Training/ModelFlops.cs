using System.Diagnostics;
using Pretrain.Shared.Recipes;
using static TorchSharp.torch;

namespace Pretrain.Worker.Training;

/// <summary>
/// Model FLOPs utilization (PaLM appendix B, as nanoGPT reports it): the FLOPs a step must do, from the
/// model's shape, against the matmul peak measured on this machine with the worker's threads.
/// </summary>
public static class ModelFlops
{
    /// <summary>
    /// Training FLOPs per token of a decoder-only transformer: 6N + 12·L·H·Q·T, where N counts the
    /// parameters without the position embedding (a lookup, not a matmul), L layers, H heads of size Q,
    /// and T the context.
    /// </summary>
    public static double PerToken(TransformerModel shape, long parameters)
    {
        long nonEmbedding = parameters - (long)shape.Context * shape.Width;
        long headSize = shape.Width / shape.Heads;
        return 6.0 * nonEmbedding + 12.0 * shape.Layers * shape.Heads * headSize * shape.Context;
    }

    /// <summary>Forward FLOPs of a k×k convolution, 2 per multiply-add, producing out × height × width values.</summary>
    public static double Conv2d(long inChannels, long outChannels, int kernel, long outHeight, long outWidth) =>
        2.0 * kernel * kernel * inChannels * outChannels * outHeight * outWidth;

    /// <summary>Forward FLOPs of a dense layer on one sample.</summary>
    public static double Linear(long inFeatures, long outFeatures) => 2.0 * inFeatures * outFeatures;

    /// <summary>
    /// Forward FLOPs per token of one transformer block (GPT's shape: qkv, output projection, a 4× MLP) over a sequence of
    /// <paramref name="tokens"/>: 2·(3d² + d² + 8d²) = 24d² in the dense layers, and 2·2·T·d for the attention scores and
    /// the weighted sum of the values.
    /// </summary>
    public static double TransformerBlockPerToken(long width, long tokens) => 24.0 * width * width + 4.0 * tokens * width;

    /// <summary>Output side of a convolution padded by (k − 1) / 2 (odd k): "same" at stride 1, halved (rounding up) at stride 2.</summary>
    public static long Strided(long size, int stride) => (size - 1) / stride + 1;

    /// <summary>
    /// Measured fp32 matmul throughput (FLOP/s) of this process's torch threads: the best of a few
    /// 512x512 products (2·512³ FLOPs each), about 0.2 s. The best, not the mean: the peak is what the
    /// hardware can do, and a noisy neighbour only ever makes a run slower.
    /// </summary>
    public static double MeasuredPeak()
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var a = randn(512, 512);
        var b = randn(512, 512);
        a.matmul(b);                                                   // warm-up: allocation, thread pool
        double best = 0;
        for (int i = 0; i < 10; i++)
        {
            var clock = Stopwatch.StartNew();
            using var c = a.matmul(b);
            best = Math.Max(best, 2.0 * 512 * 512 * 512 / clock.Elapsed.TotalSeconds);
        }
        return best;
    }
}
