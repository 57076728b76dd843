using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace Pretrain.Worker.Collectives;

/// <summary>
/// A <see cref="Memory{T}"/> over a tensor's native (unmanaged) storage, so collectives read and write the
/// tensor in place — no copy to a managed array. The tensor must be contiguous, on the CPU, and outlive
/// the memory (its storage is not pinned: libtorch never moves a CPU tensor's data).
/// </summary>
public sealed unsafe class NativeMemory<T> : MemoryManager<T> where T : unmanaged
{
    private readonly T* _pointer;
    private readonly int _length;

    public NativeMemory(Tensor tensor)
    {
        var bytes = tensor.bytes; // validates: contiguous, CPU, under 2 GiB
        if (bytes.Length % sizeof(T) != 0)
            throw new ArgumentException($"tensor of {bytes.Length} bytes is not a whole number of {typeof(T).Name}");
        _pointer = (T*)Unsafe.AsPointer(ref MemoryMarshal.GetReference(bytes));
        _length = bytes.Length / sizeof(T);
    }

    public override Span<T> GetSpan() => new(_pointer, _length);

    public override MemoryHandle Pin(int elementIndex = 0) => new(_pointer + elementIndex);

    public override void Unpin() { }

    protected override void Dispose(bool disposing) { }
}
