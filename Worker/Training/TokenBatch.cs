using System.Runtime.InteropServices;
using Pretrain.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace Pretrain.Worker.Training;

/// <summary>
/// One rank's batch as token tensors, in a buffer made once for the largest share a rank can get:
/// (capacity, T+1) int64, filled in place from the corpus each step; inputs and targets are views of its
/// first rows shifted by one token. 64·65·8 = 33 KB at 8 samples, T=64.
/// </summary>
public sealed class TokenBatch : IDisposable
{
    private readonly ITokenCorpus _corpus;
    private readonly Tensor _tokens;   // (capacity, T+1)

    public long[] Ids { get; }         // sample ids of the batch, filled by the caller (the first Load's count of them)

    public TokenBatch(ITokenCorpus corpus, int capacity)
    {
        _corpus = corpus;
        Ids = new long[capacity];
        _tokens = zeros(capacity, corpus.Context + 1, dtype: ScalarType.Int64).DetachFromDisposeScope();
    }

    public int Capacity => Ids.Length;

    /// <summary>
    /// Copies the windows of the first <paramref name="count"/> <see cref="Ids"/> from <paramref name="split"/>
    /// into the buffer; returns inputs (count, T) = tokens[:, :-1] and targets (count, T) = tokens[:, 1:],
    /// views that belong to the caller's dispose scope.
    /// </summary>
    public (Tensor Inputs, Tensor Targets) Load(Split split, int count)
    {
        var tokens = MemoryMarshal.Cast<byte, long>(_tokens.bytes);
        var row = _corpus.Context + 1;
        for (var i = 0; i < count; i++)
            _corpus.Window(split, Ids[i], tokens.Slice(i * row, row));
        var rows = _tokens.narrow(0, 0, count);
        return (rows.narrow(1, 0, _corpus.Context), rows.narrow(1, 1, _corpus.Context));
    }

    public void Dispose() => _tokens.Dispose();
}
