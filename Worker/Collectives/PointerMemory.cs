using System.Buffers;

namespace Pretrain.Worker.Collectives;

/// <summary>
/// Views a pinned buffer (a float array, or torch's native memory) as <see cref="Memory{T}"/> of bytes
/// so sockets read and write it in place: no staging copy. One instance per communicator, re-attached
/// per call, so viewing costs no allocation.
/// </summary>
internal sealed unsafe class PointerMemory : MemoryManager<byte>
{
    private byte* _pointer;
    private int _length;

    public Memory<byte> Attach(void* pointer, long length)
    {
        if (length > int.MaxValue)
            throw new ArgumentOutOfRangeException(nameof(length), length, "a collective moves at most 2 GiB per call; split the bucket");
        _pointer = (byte*)pointer;
        _length = (int)length;
        return Memory;
    }

    public void Detach()
    {
        _pointer = null;
        _length = 0;
    }

    public override Span<byte> GetSpan() => new(_pointer, _length);
    public override MemoryHandle Pin(int elementIndex = 0) => new(_pointer + elementIndex);
    public override void Unpin() { }
    protected override void Dispose(bool disposing) => Detach();
}
