using static TorchSharp.torch;

namespace Pretrain.Worker.Models.Vision;

/// <summary>
/// Images as sequences of square patches, and the fixed positions of a square grid of them, laid out as MAE's
/// reference does (patchify, unpatchify, get_2d_sincos_pos_embed), so a reconstruction reads the same way.
/// </summary>
public static class Patches
{
    /// <summary>
    /// (B, C, H, W) → (B, N, p·p·C): N = (H/p)·(W/p) patches in row-major order, each patch's values in (row, column,
    /// channel) order. <paramref name="patchSize"/> must divide H and W.
    /// </summary>
    public static Tensor Patchify(Tensor images, int patchSize)
    {
        long b = images.shape[0], c = images.shape[1], height = images.shape[2], width = images.shape[3];
        if (height % patchSize != 0 || width % patchSize != 0)
            throw new ArgumentException($"{height}x{width} images do not split into {patchSize}x{patchSize} patches");
        long h = height / patchSize, w = width / patchSize;
        using var scope = NewDisposeScope();
        return images.reshape(b, c, h, patchSize, w, patchSize)    // (B, C, h, p, w, p)
            .permute(0, 2, 4, 3, 5, 1)                             // (B, h, w, p, p, C)
            .reshape(b, h * w, patchSize * patchSize * c)          // (B, N, p·p·C)
            .MoveToOuterDisposeScope();
    }

    /// <summary>The inverse of <see cref="Patchify"/>: (B, N, p·p·C) → (B, C, H, W).</summary>
    public static Tensor Unpatchify(Tensor patches, int patchSize, int channels, int height, int width)
    {
        long b = patches.shape[0], h = height / patchSize, w = width / patchSize;
        if (h * w != patches.shape[1] || (long)patchSize * patchSize * channels != patches.shape[2])
            throw new ArgumentException($"({string.Join(", ", patches.shape)}) are not the {patchSize}-px patches of {channels}x{height}x{width} images");
        using var scope = NewDisposeScope();
        return patches.reshape(b, h, w, patchSize, patchSize, channels) // (B, h, w, p, p, C)
            .permute(0, 5, 1, 3, 2, 4)                                  // (B, C, h, p, w, p)
            .reshape(b, channels, height, width)                        // (B, C, H, W)
            .MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Fixed 2-D sin-cos position embeddings of a <paramref name="grid"/> × <paramref name="grid"/> patch grid, (N, width)
    /// float32 in row-major patch order: the first half of a row encodes the patch's grid row, the second half its column,
    /// each half as sin then cos at frequencies 1 / 10000^(i / (width/4)), i &lt; width/4 (the transformer's 1-D encoding per
    /// axis). MAE keeps them fixed rather than learned: they cost nothing to train and a 1-D learned table would have to
    /// discover the grid.
    /// </summary>
    public static Tensor SinCosPositions(int grid, int width)
    {
        if (width % 4 != 0)
            throw new ArgumentException($"width {width} is not a multiple of 4");
        var quarter = width / 4;
        var values = new float[grid * grid * width];
        for (var row = 0; row < grid; row++)
            for (var column = 0; column < grid; column++)
            {
                var at = (row * grid + column) * width;
                for (var i = 0; i < quarter; i++)
                {
                    var frequency = 1.0 / Math.Pow(10000, (double)i / quarter);
                    values[at + i] = (float)Math.Sin(row * frequency);
                    values[at + quarter + i] = (float)Math.Cos(row * frequency);
                    values[at + 2 * quarter + i] = (float)Math.Sin(column * frequency);
                    values[at + 3 * quarter + i] = (float)Math.Cos(column * frequency);
                }
            }
        return tensor(values, new long[] { grid * grid, width });
    }
}
