using System.Net;
using Pretrain.Worker.Collectives;

namespace Pretrain.Tests.Collectives;

/// <summary>A ring of <c>n</c> ranks in this process, each with its own listener on 127.0.0.1, as
/// separate worker processes would have.</summary>
internal sealed class RingHarness : IAsyncDisposable
{
    public DataPlaneListener[] Listeners { get; }
    public List<RingCommunicator> Communicators { get; } = [];
    public List<string> Log { get; } = [];

    /// <summary>The generation key every rank of the harness proves (a real job derives one per generation from its secret).</summary>
    public static readonly byte[] Key = System.Security.Cryptography.SHA256.HashData("ring harness"u8);

    public RingHarness(int worldSize, Func<int, DataPlaneTlsOptions?>? tls = null, TimeSpan? pendingWait = null) =>
        Listeners = Enumerable.Range(0, worldSize).Select(r => new DataPlaneListener(IPAddress.Loopback, tls: tls?.Invoke(r))
        {
            PendingWait = pendingWait ?? TimeSpan.FromSeconds(2),
        }).ToArray();

    public IReadOnlyList<RingPeer> Peers =>
        Listeners.Select((l, r) => new RingPeer(r, $"worker-{r}", "127.0.0.1", l.Port)).ToArray();

    /// <summary>Builds and connects generation <paramref name="generation"/> on every rank.</summary>
    public Task<RingCommunicator[]> ConnectAsync(long generation, CollectiveOptions? options = null) => ConnectAsync(generation, _ => options);

    /// <summary>Builds and connects generation <paramref name="generation"/> on every rank, each with its own options.</summary>
    public async Task<RingCommunicator[]> ConnectAsync(long generation, Func<int, CollectiveOptions?> options)
    {
        var ring = Listeners.Select((l, r) => new RingCommunicator(l, generation, r, Peers, Key, options(r))).ToArray();
        Communicators.AddRange(ring);
        await Task.WhenAll(ring.Select(c => c.ConnectAsync()));
        return ring;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var c in Communicators) await c.DisposeAsync();
        foreach (var l in Listeners) l.Dispose();
    }

    /// <summary>Distinct, exactly representable values: sums over 4 ranks stay exact in fp32.</summary>
    public static float Value(int rank, int index) => (index % 1021) + rank * 4096;
}
