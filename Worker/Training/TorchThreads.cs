namespace Pretrain.Worker.Training;

/// <summary>
/// Intra-op threads per worker. Workers on one machine share its cores; oversubscribed they fight and
/// every throughput figure lies (2 cores, 2 workers → 1 thread each). The caller decides: the thread count
/// is part of what makes a run bit-for-bit reproducible (libtorch's reductions split work by thread).
/// </summary>
public static class TorchThreads
{
    public static int For(int workersOnThisMachine, int cores) => Math.Max(1, cores / Math.Max(1, workersOnThisMachine));

    /// <summary>Sets torch's intra-op threads for <paramref name="workersOnThisMachine"/> workers sharing this machine; returns the count.</summary>
    public static int Configure(int workersOnThisMachine)
    {
        var threads = For(workersOnThisMachine, Environment.ProcessorCount);
        TorchSharp.torch.set_num_threads(threads);
        return threads;
    }
}
