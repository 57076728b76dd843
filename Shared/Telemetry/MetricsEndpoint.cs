using System.Net;
using System.Net.Sockets;
using System.Text;
using Prometheus;

namespace Pretrain.Shared.Telemetry;

/// <summary>Whether a process can do its work now, and why not: what <c>/readyz</c> answers.</summary>
public delegate (bool Ready, string Why) Readiness();

/// <summary>
/// Serves this process's Prometheus metrics at http://HOST:PORT/metrics, and the probes a Kubernetes pod
/// needs on the same port: <c>/healthz</c> (the process is alive and answering: liveness) and <c>/readyz</c>
/// (200 when <see cref="Readiness"/> says ready, else 503, with the reason in the body either way). An
/// HttpListener of our own rather than prometheus-net's MetricServer, which serves one path only; the
/// exposition itself is prometheus-net's. No ASP.NET in a worker.
/// </summary>
public sealed class MetricsEndpoint : IDisposable
{
    readonly HttpListener _listener;
    readonly Readiness _readiness;
    readonly Task _serving;

    public int Port { get; }
    public string Url { get; }

    MetricsEndpoint(HttpListener listener, string host, int port, Readiness readiness)
    {
        (_listener, _readiness, Port) = (listener, readiness, port);
        Url = $"http://{host}:{port}/metrics";
        _serving = Task.Run(ServeAsync);
    }

    /// <summary>
    /// Starts the endpoint on <paramref name="host"/> (0.0.0.0: every address); port 0 takes a free port, a
    /// negative port means off (returns null). Without <paramref name="readiness"/>, /readyz is ready once serving.
    /// </summary>
    public static MetricsEndpoint? Start(string host, int port, Readiness? readiness = null)
    {
        if (port < 0) return null;
        // HttpListener cannot bind port 0, so ask the OS for a free port first; a rare race with
        // another process is retried a few times.
        for (int attempt = 0; ; attempt++)
        {
            int chosen = port == 0 ? FreePort(host) : port;
            var listener = new HttpListener();
            listener.Prefixes.Add($"http://{(host is "0.0.0.0" or "::" ? "*" : host)}:{chosen}/");
            try
            {
                listener.Start();
                return new MetricsEndpoint(listener, host, chosen, readiness ?? (() => (true, "serving")));
            }
            catch (HttpListenerException e) when (port == 0 && attempt < 5)
            {
                _ = e;   // taken between the probe and the bind: try another
                listener.Close();
            }
            catch (HttpListenerException e)
            {
                listener.Close();
                throw new InvalidOperationException($"cannot serve metrics on {host}:{chosen}: {e.Message} (choose another --metrics-port, or -1 to turn metrics off)", e);
            }
        }
    }

    async Task ServeAsync()
    {
        while (_listener.IsListening)
        {
            HttpListenerContext context;
            try { context = await _listener.GetContextAsync(); }
            catch (Exception e) when (e is HttpListenerException or ObjectDisposedException or InvalidOperationException) { return; }  // stopped
            _ = Task.Run(() => AnswerAsync(context));
        }
    }

    async Task AnswerAsync(HttpListenerContext context)
    {
        var response = context.Response;
        try
        {
            switch (context.Request.Url?.AbsolutePath.TrimEnd('/'))
            {
                case "/metrics":
                    response.ContentType = "text/plain; version=0.0.4; charset=utf-8";
                    await Metrics.DefaultRegistry.CollectAndExportAsTextAsync(response.OutputStream);
                    break;
                case "/healthz":
                    await TextAsync(response, 200, "ok");
                    break;
                case "/readyz":
                    var (ready, why) = _readiness();
                    await TextAsync(response, ready ? 200 : 503, (ready ? "ready: " : "not ready: ") + why);
                    break;
                default:
                    await TextAsync(response, 404, "not found: this endpoint serves /metrics, /healthz and /readyz");
                    break;
            }
        }
        catch (Exception e) when (e is HttpListenerException or IOException or ObjectDisposedException)
        {
            // The scraper or probe went away mid-answer: nothing to tell it.
        }
        finally
        {
            try { response.Close(); } catch (Exception e) when (e is HttpListenerException or ObjectDisposedException or IOException) { }
        }
    }

    static async Task TextAsync(HttpListenerResponse response, int status, string text)
    {
        response.StatusCode = status;
        response.ContentType = "text/plain; charset=utf-8";
        var bytes = Encoding.UTF8.GetBytes(text + "\n");
        response.ContentLength64 = bytes.Length;
        await response.OutputStream.WriteAsync(bytes);
    }

    static int FreePort(string host)
    {
        using var probe = new TcpListener(IPAddress.TryParse(host, out var ip) ? ip : IPAddress.Loopback, 0);
        probe.Start();
        return ((IPEndPoint)probe.LocalEndpoint).Port;
    }

    public void Dispose()
    {
        _listener.Close();
        _serving.Wait(TimeSpan.FromSeconds(2));
    }
}
