using Pretrain.Worker.Host;
using Xunit;

namespace Pretrain.Tests.Training;

/// <summary>
/// <see cref="NativeHeap"/>: a block freed and allocated again is not faulted in again. 48 MiB is above the largest
/// size glibc ever serves from its heap by default (32 MiB), so without the setting every allocation is a fresh mmap
/// whose 12,288 pages each fault on first touch, as libtorch's large activations and gradients were every step.
/// </summary>
public sealed class NativeHeapTests
{
    [Fact]
    public void A_freed_block_is_reused_without_faulting_its_pages_in_again()
    {
        Assert.True(NativeHeap.KeepFreedMemory(), "glibc refused a setting");
        const int bytes = 48 << 20, pages = bytes / 4096;
        TouchAndFree(bytes);   // the heap grows once
        long before = ThreadMinorFaults();
        for (var i = 0; i < 3; i++) TouchAndFree(bytes);
        long faults = ThreadMinorFaults() - before;
        Assert.True(faults < pages / 10, $"3 reuses of a {bytes >> 20} MiB block faulted {faults} pages in ({pages} per fresh block)");
    }

    private static unsafe void TouchAndFree(int bytes)
    {
        var block = System.Runtime.InteropServices.NativeMemory.Alloc((nuint)bytes);   // malloc, as libtorch's allocator
        try { new Span<byte>(block, bytes).Fill(1); }
        finally { System.Runtime.InteropServices.NativeMemory.Free(block); }
    }

    /// <summary>This thread's minor faults (field 10 of /proc/thread-self/stat): other tests fault in parallel.</summary>
    private static long ThreadMinorFaults()
    {
        var stat = File.ReadAllText("/proc/thread-self/stat");
        return long.Parse(stat[(stat.LastIndexOf(')') + 2)..].Split(' ')[7], System.Globalization.CultureInfo.InvariantCulture);
    }
}
