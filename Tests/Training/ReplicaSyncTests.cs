using Pretrain.Tests.Collectives;
using Pretrain.Worker.Collectives;
using Pretrain.Worker.Training;
using Xunit;
using static TorchSharp.torch;

namespace Pretrain.Tests.Training;

/// <summary>State by broadcast over a real loopback ring: what a newcomer or a survivor a step behind adopts.</summary>
public sealed class ReplicaSyncTests
{
    static Tensor[] State(int rank) =>
    [
        rank == 0 ? arange(10, dtype: float32) * 1.5f : zeros(10, dtype: float32),
        rank == 0 ? tensor(new long[] { 7, 8, 9 }) : zeros(3, dtype: int64),
    ];

    static ReplicaHeader Header(Tensor[] state, long step) =>
        new(step, step * 2, 1.25, (ulong)step * 31, ReplicaSync.Checksum(state), state.Sum(t => (long)t.bytes.Length));

    [Fact]
    public async Task A_member_behind_adopts_the_source_state_in_chunks_and_its_checksum_is_verified()
    {
        await using var harness = new RingHarness(2);
        var ring = await harness.ConnectAsync(1);
        var results = await Task.WhenAll(Enumerable.Range(0, 2).Select(rank => Task.Factory.StartNew(() =>
        {
            var state = State(rank);
            var receiving = false;
            // 8-byte chunks: every tensor crosses as several narrowed views of its storage.
            var (header, transferred) = ReplicaSync.AdoptAsync(new HostCommunicator(ring[rank]), 0, Header(state, rank == 0 ? 12 : 11), true,
                state, () => receiving = true, CancellationToken.None, chunkBytes: 8).GetAwaiter().GetResult();
            return (header, transferred, receiving, Floats: state[0].data<float>().ToArray(), Longs: state[1].data<long>().ToArray());
        }, TaskCreationOptions.LongRunning)));

        Assert.All(results, r => Assert.Equal(12, r.header.Step));
        Assert.All(results, r => Assert.True(r.transferred));
        Assert.Equal([false, true], results.Select(r => r.receiving));          // only the receiver's tensors are overwritten
        Assert.Equal(results[0].Floats, results[1].Floats);
        Assert.Equal([7L, 8, 9], results[1].Longs);
        Assert.Equal(13.5f, results[1].Floats[9]);
    }

    [Fact]
    public async Task Members_that_already_agree_move_no_tensor()
    {
        await using var harness = new RingHarness(2);
        var ring = await harness.ConnectAsync(1);
        var results = await Task.WhenAll(Enumerable.Range(0, 2).Select(rank => Task.Factory.StartNew(() =>
        {
            var state = State(0);
            var receiving = false;
            var result = ReplicaSync.AdoptAsync(new HostCommunicator(ring[rank]), 1, Header(state, 5), true, state, () => receiving = true,
                CancellationToken.None).GetAwaiter().GetResult();
            return (result.Transferred, receiving);
        }, TaskCreationOptions.LongRunning)));
        Assert.All(results, r => Assert.False(r.Transferred || r.receiving));
    }

    [Fact]
    public async Task A_replica_of_another_size_is_refused_naming_the_source()
    {
        await using var harness = new RingHarness(2);
        var ring = await harness.ConnectAsync(1, new CollectiveOptions { Timeout = TimeSpan.FromSeconds(2) });  // the source then waits on the refuser
        var errors = await Task.WhenAll(Enumerable.Range(0, 2).Select(rank => Task.Factory.StartNew(() =>
        {
            Tensor[] state = rank == 0 ? State(0) : [zeros(4, dtype: float32)];
            return Record.Exception(() => ReplicaSync.AdoptAsync(new HostCommunicator(ring[rank]), 0, Header(state, 3), true, state, () => { },
                CancellationToken.None).GetAwaiter().GetResult());
        }, TaskCreationOptions.LongRunning)));
        var refused = Assert.IsType<InvalidDataException>(errors[1]);
        Assert.Contains("rank 0", refused.Message);
    }
}
