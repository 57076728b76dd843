using Pretrain.Worker.Collectives;

namespace Pretrain.Tests.Training;

/// <summary>
/// Several ranks in one process for tests of the training side (the TCP ring is tested elsewhere): an
/// allreduce publishes each rank's buffer, waits for all, and sums in rank order so every rank gets the
/// same bits. Each rank must run on its own thread (the barrier blocks).
/// </summary>
public sealed class InProcessGroup(int worldSize)
{
    private readonly Barrier _barrier = new(worldSize);
    private readonly Memory<float>[] _buffers = new Memory<float>[worldSize];
    private readonly Memory<long>[] _integers = new Memory<long>[worldSize];

    public ICollectives Rank(int rank) => new Member(this, rank);

    private sealed class Member(InProcessGroup group, int rank) : ICollectives
    {
        public long Generation => 1;
        public int Rank => rank;
        public int WorldSize => group._buffers.Length;

        public Task AllReduceSumAsync(Memory<float> data, CancellationToken ct = default)
        {
            group._buffers[rank] = data;
            group._barrier.SignalAndWait(ct);
            var sum = new float[data.Length];
            foreach (var buffer in group._buffers)
                for (var i = 0; i < sum.Length; i++)
                    sum[i] += buffer.Span[i];
            group._barrier.SignalAndWait(ct); // everyone has read before anyone writes
            sum.CopyTo(data);
            group._barrier.SignalAndWait(ct);
            return Task.CompletedTask;
        }

        public Task AllReduceSumAsync(Memory<long> data, CancellationToken ct = default)
        {
            group._integers[rank] = data;
            group._barrier.SignalAndWait(ct);
            var sum = new long[data.Length];
            foreach (var buffer in group._integers)
                for (var i = 0; i < sum.Length; i++)
                    sum[i] += buffer.Span[i];
            group._barrier.SignalAndWait(ct);
            sum.CopyTo(data);
            group._barrier.SignalAndWait(ct);
            return Task.CompletedTask;
        }

        public Task AllGatherAsync(ReadOnlyMemory<float> local, Memory<float> result, CancellationToken ct = default) =>
            throw new NotSupportedException();

        public Task BroadcastAsync(Memory<byte> data, int root, CancellationToken ct = default) =>
            throw new NotSupportedException();

        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }
}

/// <summary>
/// Rank 0 of two whose allreduce leaves the data as it is and records, in start order, the size of every tensor
/// started (gradient buckets tell apart by size): what the gradient buckets start, and when.
/// </summary>
public sealed class RecordingCommunicator : ICommunicator
{
    private readonly List<long> _started = [];

    public long Generation => 1;
    public int Rank => 0;
    public int WorldSize => 2;

    /// <summary>Elements of each allreduce started so far, in order.</summary>
    public IReadOnlyList<long> Started
    {
        get { lock (_started) return [.. _started]; }
    }

    public CollectiveHandle AllReduceSum(TorchSharp.torch.Tensor data, CancellationToken ct = default)
    {
        lock (_started) _started.Add(data.numel());
        return CollectiveHandle.Done;
    }

    public CollectiveHandle AllGather(TorchSharp.torch.Tensor local, TorchSharp.torch.Tensor result, CancellationToken ct = default) =>
        throw new NotSupportedException();

    public CollectiveHandle Broadcast(TorchSharp.torch.Tensor data, int root, CancellationToken ct = default) =>
        throw new NotSupportedException();

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}
