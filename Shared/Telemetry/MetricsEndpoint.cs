using System.Net;
using System.Net.Sockets;
using Prometheus;

namespace Pretrain.Shared.Telemetry;

/// <summary>
/// Serves this process's Prometheus metrics at http://HOST:PORT/metrics (prometheus-net's own
/// HttpListener server: no ASP.NET needed in a worker).
/// </summary>
public sealed class MetricsEndpoint : IDisposable
{
    readonly MetricServer _server;

    public int Port { get; }
    public string Url { get; }

    MetricsEndpoint(MetricServer server, string host, int port)
    {
        _server = server;
        Port = port;
        Url = $"http://{host}:{port}/metrics";
    }

    /// <summary>Starts the endpoint; port 0 takes a free port, a negative port means off (returns null).</summary>
    public static MetricsEndpoint? Start(string host, int port)
    {
        if (port < 0) return null;
        // HttpListener cannot bind port 0, so ask the OS for a free port first; a rare race with
        // another process is retried a few times.
        for (int attempt = 0; ; attempt++)
        {
            int chosen = port == 0 ? FreePort(host) : port;
            var server = new MetricServer(hostname: host, port: chosen);
            try
            {
                server.Start();
                return new MetricsEndpoint(server, host, chosen);
            }
            catch (HttpListenerException e) when (port == 0 && attempt < 5)
            {
                _ = e;   // taken between the probe and the bind: try another
            }
            catch (HttpListenerException e)
            {
                throw new InvalidOperationException($"cannot serve metrics on {host}:{chosen}: {e.Message} (choose another --metrics-port, or -1 to turn metrics off)", e);
            }
        }
    }

    static int FreePort(string host)
    {
        using var probe = new TcpListener(IPAddress.TryParse(host, out var ip) ? ip : IPAddress.Loopback, 0);
        probe.Start();
        return ((IPEndPoint)probe.LocalEndpoint).Port;
    }

    public void Dispose() => _server.Dispose();
}
