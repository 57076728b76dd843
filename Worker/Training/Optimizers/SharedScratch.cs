using static TorchSharp.torch;

namespace Pretrain.Worker.Training.Optimizers;

/// <summary>
/// A scratch tensor shaped like each parameter, made once: every one is a view of the same flat buffer, as large as
/// the largest parameter (one buffer per dtype and device). An optimizer computes one parameter's step after another
/// in these views instead of allocating a temporary per parameter per step, and the memory this costs is one
/// parameter's, not the model's (a per-parameter <c>empty_like</c> would add half again to AdamW's m and v).
/// </summary>
sealed class SharedScratch : IDisposable
{
    private readonly Tensor[] _buffers;   // flat, one per (dtype, device)
    private readonly Tensor[] _views;     // one per parameter, in the order given

    public SharedScratch(IReadOnlyList<Tensor> parameters)
    {
        _views = new Tensor[parameters.Count];
        var buffers = new List<Tensor>();
        var groups = Enumerable.Range(0, parameters.Count)
            .GroupBy(i => (parameters[i].dtype, parameters[i].device_type, parameters[i].device_index));
        foreach (var group in groups)
        {
            var first = parameters[group.First()];
            var buffer = empty(group.Max(i => parameters[i].numel()), dtype: first.dtype, device: first.device).DetachFromDisposeScope();
            buffers.Add(buffer);
            foreach (var i in group)
            {
                using var flat = buffer.narrow(0, 0, parameters[i].numel());
                _views[i] = flat.view(parameters[i].shape).DetachFromDisposeScope();
            }
        }
        _buffers = [.. buffers];
    }

    /// <summary>Parameter <paramref name="index"/>'s scratch, shaped like it; its contents last until another parameter's is written.</summary>
    public Tensor this[int index] => _views[index];

    public void Dispose()
    {
        foreach (var view in _views) view.Dispose();
        foreach (var buffer in _buffers) buffer.Dispose();
    }
}
