using static TorchSharp.torch;

namespace Pretrain.Data.Collators;

/// <summary>
/// Causal-LM packing as nanoGPT does it: documents are concatenated into one token stream, each
/// followed by a separator (GPT-2's &lt;|endoftext|&gt;), and the stream is cut into fixed windows of
/// <see cref="Context"/> tokens. Window w's inputs are stream[w·T, w·T + T) and its targets the same
/// range shifted by one, so windows do not overlap and a stream of n tokens gives (n − 1) / T of them.
/// A window id is the sample id the sampler hands out; no randomness is involved.
/// </summary>
public sealed class CausalLmCollator
{
    public int Context { get; }

    public CausalLmCollator(int context)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(context, 1);
        Context = context;
    }

    /// <summary>Documents joined into one stream, each followed by <paramref name="separator"/>.</summary>
    public static int[] Concatenate(IEnumerable<int[]> documents, int separator)
    {
        var stream = new List<int>();
        foreach (var document in documents)
        {
            stream.AddRange(document);
            stream.Add(separator);
        }
        return [.. stream];
    }

    /// <summary>How many whole windows a stream of <paramref name="streamLength"/> tokens holds.</summary>
    public long Windows(long streamLength) => Math.Max(0, streamLength - 1) / Context;

    /// <summary>Fills the inputs and targets (T each) of window <paramref name="window"/>.</summary>
    public void Window(ReadOnlySpan<int> stream, long window, Span<long> inputs, Span<long> targets)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(window);
        if (window >= Windows(stream.Length))
            throw new ArgumentOutOfRangeException(nameof(window), window, $"a stream of {stream.Length} tokens holds {Windows(stream.Length)} windows of {Context}");
        if (inputs.Length != Context || targets.Length != Context)
            throw new ArgumentException($"inputs and targets need {Context} places, got {inputs.Length} and {targets.Length}");
        var start = checked((int)(window * Context));
        for (var t = 0; t < Context; t++)
        {
            inputs[t] = stream[start + t];
            targets[t] = stream[start + t + 1];
        }
    }

    /// <summary>The windows <paramref name="windowIds"/> as int64 (B, T) inputs and targets.</summary>
    public (Tensor Inputs, Tensor Targets) Collate(ReadOnlySpan<int> stream, ReadOnlySpan<long> windowIds)
    {
        var (inputs, targets) = (new long[windowIds.Length * Context], new long[windowIds.Length * Context]);
        for (var b = 0; b < windowIds.Length; b++)
            Window(stream, windowIds[b], inputs.AsSpan(b * Context, Context), targets.AsSpan(b * Context, Context));
        long[] shape = [windowIds.Length, Context];
        return (tensor(inputs, shape), tensor(targets, shape)); // (B, T) each
    }
}
