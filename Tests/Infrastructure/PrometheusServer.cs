using System.Diagnostics;
using System.Text.Json;

namespace Pretrain.Tests.Infrastructure;

/// <summary>
/// A real Prometheus server (Debian's prometheus package, installed by ./test.sh) scraping the given
/// targets every second, on a free loopback port with its data in a temporary folder.
/// </summary>
public sealed class PrometheusServer : IDisposable
{
    public const string Binary = "/usr/bin/prometheus";
    readonly Process _process;
    readonly string _dir;
    readonly HttpClient _http = new() { Timeout = TimeSpan.FromSeconds(5) };

    public int Port { get; }

    public static bool IsInstalled => File.Exists(Binary);

    public PrometheusServer(IEnumerable<string> targets)
    {
        _dir = Directory.CreateTempSubdirectory("prometheus-").FullName;
        Port = FreePorts.Next();
        string config = Path.Combine(_dir, "prometheus.yml");
        File.WriteAllText(config, $"""
            global:
              scrape_interval: 1s
              scrape_timeout: 900ms
            scrape_configs:
              - job_name: pretrain
                static_configs:
                  - targets: [{string.Join(", ", targets.Select(t => "'" + t + "'"))}]
            """);
        var info = new ProcessStartInfo(Binary)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (string a in new[] { "--config.file=" + config, "--storage.tsdb.path=" + Path.Combine(_dir, "data"),
                     "--web.listen-address=127.0.0.1:" + Port, "--log.level=warn" })
            info.ArgumentList.Add(a);
        _process = Process.Start(info)!;
        _process.OutputDataReceived += (_, _) => { };
        _process.ErrorDataReceived += (_, _) => { };
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    /// <summary>Runs an instant PromQL query and returns the "result" array of the answer.</summary>
    public async Task<JsonElement> QueryAsync(string promql)
    {
        string url = $"http://127.0.0.1:{Port}/api/v1/query?query={Uri.EscapeDataString(promql)}";
        using var doc = JsonDocument.Parse(await _http.GetStringAsync(url));
        return doc.RootElement.GetProperty("data").GetProperty("result").Clone();
    }

    /// <summary>Polls a query until it returns at least one series, or fails after the timeout.</summary>
    public async Task<JsonElement> WaitForSeriesAsync(string promql, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        Exception? last = null;
        while (DateTime.UtcNow < deadline)
        {
            try
            {
                var result = await QueryAsync(promql);
                if (result.GetArrayLength() > 0) return result;
            }
            catch (HttpRequestException e) { last = e; }   // the server is still starting
            await Task.Delay(500);
        }
        throw new TimeoutException($"Prometheus on port {Port} found no series for '{promql}' within {timeout}" + (last == null ? "" : ": " + last.Message));
    }

    public void Dispose()
    {
        if (!_process.HasExited) _process.Kill(entireProcessTree: true);
        _process.WaitForExit(5000);
        _process.Dispose();
        _http.Dispose();
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }
}
