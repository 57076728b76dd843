namespace Pretrain.Worker.Collectives;

/// <summary>
/// One ring link as the collectives use it, once connected: data flows one way (this rank to the next), failure notices
/// the other way (<see cref="RingCommunicator"/>'s failure handling). Over TCP (<see cref="RingLink"/>) both are the two
/// directions of one socket. Over shared memory the data goes through a mapped ring (<see cref="SharedMemorySender"/>
/// at the sending end, <see cref="SharedMemoryReceiver"/> at the receiving end) and the socket keeps the rest.
/// </summary>
internal interface IRingLink : IDisposable
{
    LinkTransport Transport { get; }

    /// <summary>Fills <paramref name="buffer"/> from the link; false when the peer closed it first. At the data-sending end
    /// this reads failure notices, at the receiving end data.</summary>
    ValueTask<bool> ReceiveExactlyAsync(Memory<byte> buffer, CancellationToken ct);

    /// <summary>
    /// Receives <paramref name="target"/>'s length of data and adds it into <paramref name="target"/> as elements of
    /// <paramref name="kind"/>: TCP receives into <paramref name="scratch"/> (at least as long) first, shared memory adds
    /// straight from the mapping. False when the peer closed the link first.
    /// </summary>
    ValueTask<bool> ReceiveAddingAsync(Memory<byte> target, CollectiveOp kind, Memory<byte> scratch, CancellationToken ct);

    /// <summary>Sends all of <paramref name="buffer"/> (data, at the sending end).</summary>
    ValueTask SendAllAsync(ReadOnlyMemory<byte> buffer, CancellationToken ct);

    /// <summary>A failure notice back to the sending end, synchronously, from any thread (at the receiving end).</summary>
    void SendNotice(byte[] notice);
}
