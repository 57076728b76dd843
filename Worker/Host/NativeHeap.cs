using System.Runtime.InteropServices;

namespace Pretrain.Worker.Host;

/// <summary>
/// Keeps the C heap's freed memory in the process instead of handing it back to the kernel, so a training step reuses
/// the pages the previous step touched. libtorch allocates every activation, gradient and temporary with malloc, and
/// glibc serves large blocks by mmap and returns them by munmap on free (and trims or deletes thread-arena heaps once
/// they are empty), so by default each step maps fresh memory and faults in every page it writes. A page fault costs
/// 0.1-0.3 µs on bare metal but 12 µs in the Firecracker VMs these machines are (docs/BENCHMARKS.md, Step overhead):
/// there, the faults of a SimCLR step took more time than its arithmetic. PyTorch users get the same effect from
/// jemalloc or tcmalloc with retention; glibc's own knobs are enough, and cost no package.
/// </summary>
/// <remarks>
/// The price is that resident memory stays at the step's peak (plus fragmentation) rather than falling between steps,
/// which a training process that repeats the same step would reach again a moment later anyway. `pretrain`'s Main calls it
/// first, before libtorch loads; arenas made earlier (by the runtime's own threads) are kept too, by the top pad.
/// </remarks>
public static partial class NativeHeap
{
    const int TrimThreshold = -1, TopPad = -2, MmapMax = -4, ArenaMax = -8;   // glibc's M_* parameter numbers (malloc.h)

    /// <summary>Whether glibc took every setting (false off glibc, e.g. musl or another OS: nothing changes there).</summary>
    public static bool KeepFreedMemory()
    {
        if (!OperatingSystem.IsLinux()) return false;
        try
        {
            // One arena: threads made from now on share the main heap, which the two settings below keep whole.
            // A worker allocates its tensors from one training thread (libtorch's intra-op threads hardly allocate), so
            // per-thread arenas gain little, and each extra arena is a heap glibc could unmap.
            return mallopt(ArenaMax, 1) == 1
                // No mmap for large blocks: they come from the heap and go back to it on free.
                && mallopt(MmapMax, 0) == 1
                // Never shrink the heap's top (the default trims above 128 KiB, dynamically up to 64 MiB). -1 reaches glibc
                // as SIZE_MAX (mallopt's int becomes a size_t): int.MaxValue, 2 GiB, still trimmed a GPT on cl100k's whole
                // vocabulary, whose logits and their gradients free more than that at once, and faulted them in every step.
                && mallopt(TrimThreshold, -1) == 1
                // An arena made before this call is deleted once empty unless its slack is under the top pad.
                && mallopt(TopPad, 64 << 20) == 1;
        }
        catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException)
        {
            return false;
        }
    }

    [LibraryImport("libc")]
    private static partial int mallopt(int param, int value);
}
