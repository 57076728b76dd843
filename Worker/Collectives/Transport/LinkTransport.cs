namespace Pretrain.Worker.Collectives;

/// <summary>How data travels on one ring link.</summary>
public enum LinkTransport
{
    /// <summary>Not connected (or a ring of one rank).</summary>
    None = 0,
    Tcp = 1,
    /// <summary>TCP under mutual TLS (the job's <c>tls_data_plane</c>).</summary>
    Tls = 2,
    /// <summary>A memory-mapped ring both processes of one host map (<see cref="SharedRing"/>); the TCP connection
    /// stays for doorbells, failure notices and the peer's death.</summary>
    SharedMemory = 3,
}

/// <summary>Which transports a rank may use for its ring links (<c>--transport</c>).</summary>
public enum TransportPolicy
{
    /// <summary>Shared memory to a peer on the same host (same boot and network namespace) when the ring is not TLS; TCP otherwise.</summary>
    Auto = 0,
    /// <summary>TCP always (for comparison, or when /dev/shm is too small or shared with untrusted processes).</summary>
    Tcp = 1,
}
