namespace Pretrain.Worker.Collectives;

/// <summary>World size 1: every collective is the identity, which is what a ring of one does. For single-process evaluation.</summary>
public sealed class SingleRank : ICollectives
{
    public long Generation => 1;
    public int Rank => 0;
    public int WorldSize => 1;
    public Task AllReduceSumAsync(Memory<float> data, CancellationToken ct = default) => Task.CompletedTask;
    public Task AllReduceSumAsync(Memory<long> data, CancellationToken ct = default) => Task.CompletedTask;

    public Task AllGatherAsync(ReadOnlyMemory<float> local, Memory<float> result, CancellationToken ct = default)
    {
        local.CopyTo(result);
        return Task.CompletedTask;
    }

    public Task BroadcastAsync(Memory<byte> data, int root, CancellationToken ct = default) => Task.CompletedTask;
    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}
