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
    Process _process = null!;
    readonly string _dir;
    readonly HttpClient _http = new() { Timeout = TimeSpan.FromSeconds(5) };
    readonly System.Text.StringBuilder _log = new();

    public int Port { get; private set; }

    public static bool IsInstalled => File.Exists(Binary);

    public PrometheusServer(IEnumerable<string> targets)
    {
        _dir = Directory.CreateTempSubdirectory("prometheus-").FullName;
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
        // The probed port can be taken by someone else before Prometheus binds it (outbound
        // connections of the running job use ephemeral ports too): retry on a fresh port.
        for (int attempt = 1; ; attempt++)
        {
            Port = FreePorts.Next();
            _process = Start(config, Port);
            if (WaitUntilReady(TimeSpan.FromSeconds(20))) return;
            string log;
            lock (_log) log = _log.ToString();
            if (!_process.HasExited && attempt >= 3) throw new TimeoutException($"Prometheus on port {Port} not ready within 20 s; its log:\n{log}");
            if (attempt >= 3) throw new InvalidOperationException($"Prometheus exited with code {_process.ExitCode} three times; its log:\n{log}");
            if (!_process.HasExited) _process.Kill(entireProcessTree: true);
            _process.Dispose();
        }
    }

    Process Start(string config, int port)
    {
        var info = new ProcessStartInfo(Binary) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in new[] { "--config.file=" + config, "--storage.tsdb.path=" + Path.Combine(_dir, "data-" + port),
                     "--web.listen-address=127.0.0.1:" + port, "--log.level=warn" })
            info.ArgumentList.Add(a);
        var process = Process.Start(info)!;
        process.OutputDataReceived += (_, e) => { lock (_log) _log.AppendLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { lock (_log) _log.AppendLine(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return process;
    }

    bool WaitUntilReady(TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline && !_process.HasExited)
        {
            try
            {
                if (_http.GetAsync($"http://127.0.0.1:{Port}/-/ready").GetAwaiter().GetResult().IsSuccessStatusCode) return true;
            }
            catch (HttpRequestException) { }
            catch (TaskCanceledException) { }
            Thread.Sleep(200);
        }
        return false;
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
        string log;
        lock (_log) log = _log.ToString();
        throw new TimeoutException($"Prometheus on port {Port} found no series for '{promql}' within {timeout}" + (last == null ? "" : ": " + last.Message)
            + (_process.HasExited ? $"; prometheus exited with code {_process.ExitCode}" : "") + $"; its log:\n{log}");
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
