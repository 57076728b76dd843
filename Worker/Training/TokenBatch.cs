using System.Runtime.InteropServices;
using Pretrain.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace Pretrain.Worker.Training;

/// <summary>
/// One rank's batch as token tensors, in a buffer made once: (b, T+1) int64, filled in place from the
/// corpus each step; inputs and targets are views of it shifted by one token. 64·65·8 = 33 KB at b=8, T=64.
/// </summary>
public sealed class TokenBatch : IDisposable
{
    private readonly ITokenCorpus _corpus;
    private readonly Tensor _tokens;   // (b, T+1)

    public long[] Ids { get; }         // sample ids of the batch, filled by the caller
    public Tensor Inputs { get; }      // (b, T) = tokens[:, :-1]
    public Tensor Targets { get; }     // (b, T) = tokens[:, 1:]

    public TokenBatch(ITokenCorpus corpus, int samples)
    {
        _corpus = corpus;
        Ids = new long[samples];
        _tokens = zeros(samples, corpus.Context + 1, dtype: ScalarType.Int64).DetachFromDisposeScope();
        Inputs = _tokens.narrow(1, 0, corpus.Context).DetachFromDisposeScope();
        Targets = _tokens.narrow(1, 1, corpus.Context).DetachFromDisposeScope();
    }

    /// <summary>Copies the windows of <see cref="Ids"/> from <paramref name="split"/> into the buffer.</summary>
    public void Load(Split split)
    {
        var tokens = MemoryMarshal.Cast<byte, long>(_tokens.bytes);
        var row = _corpus.Context + 1;
        for (var i = 0; i < Ids.Length; i++)
            _corpus.Window(split, Ids[i], tokens.Slice(i * row, row));
    }

    public void Dispose()
    {
        Inputs.Dispose();
        Targets.Dispose();
        _tokens.Dispose();
    }
}
