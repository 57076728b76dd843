using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;
using Pretrain.Tests.Cluster;
using Pretrain.Tests.Infrastructure;
using Xunit;
using Xunit.Abstractions;

namespace Pretrain.Tests.Kubernetes;

/// <summary>
/// The Grafana dashboard (k8s/grafana/pretrain.json) against the real thing: a real Prometheus scrapes a real
/// `pretrain local` job that checkpoints, evaluates, loses a worker to SIGKILL and takes a newcomer, and every
/// panel's query must return data while it runs — a panel that shows "No data" on a healthy job fails here.
/// </summary>
public sealed class DashboardTests(ITestOutputHelper output) : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("pretrain-dashboard-").FullName;

    /// <summary>The tiny GPT for as long as the test needs: a checkpoint every 10 steps, an evaluation every 20.</summary>
    string Recipe()
    {
        var text = File.ReadAllText(LongRecipe.Write(_dir));
        text = Regex.Replace(text, @"(?m)^(checkpoint:\n\s+every: )\d+", "${1}10");
        text = Regex.Replace(text, @"(?m)^eval:\n", "eval:\n  every: 20\n");
        var path = Path.Combine(_dir, "dashboard.yaml");
        File.WriteAllText(path, text);
        return path;
    }

    /// <summary>A port such that it and the next <paramref name="count"/> − 1 are free now (worker i serves metrics on base + i).</summary>
    static int FreeRange(int count)
    {
        for (var attempt = 0; attempt < 50; attempt++)
        {
            var first = FreePorts.Next();
            if (first + count > 65535) continue;
            var listeners = new List<TcpListener>();
            try
            {
                for (var p = first; p < first + count; p++)
                {
                    var l = new TcpListener(IPAddress.Loopback, p);
                    l.Start();
                    listeners.Add(l);
                }
                return first;
            }
            catch (SocketException) { }
            finally { foreach (var l in listeners) l.Stop(); }
        }
        throw new InvalidOperationException($"no {count} consecutive free ports found");
    }

    [Fact]
    public async Task Every_panel_query_returns_data_from_a_real_run()
    {
        Assert.True(PrometheusServer.IsInstalled, $"{PrometheusServer.Binary} is missing: ./test.sh installs Debian's prometheus package");
        var queries = ManifestTests.DashboardQueries(File.ReadAllText(Path.Combine(RepoPaths.Root, "k8s", "grafana", "pretrain.json")));
        int coordinator = FreePorts.Next(), workers = FreeRange(3);
        using var cli = CliProcess.Start("local", "--recipe", Recipe(), "--workers", "3", "--max-restarts", "1",
            "--run-dir", Path.Combine(_dir, "run"), "--metrics-port", coordinator.ToString(), "--worker-metrics-port", workers.ToString());
        using var prometheus = new PrometheusServer([$"127.0.0.1:{coordinator}", .. Enumerable.Range(workers, 3).Select(p => $"127.0.0.1:{p}")]);

        // A checkpoint (step 10) and an evaluation (step 20) behind it, then a worker lost and a newcomer admitted.
        await cli.WaitForOutputAsync(o => LongRecipe.LastStep(o) >= 22, TimeSpan.FromMinutes(2));
        System.Diagnostics.Process.GetProcessById(LongRecipe.WorkerPid(cli.Output, "worker-1")).Kill();   // SIGKILL
        await cli.WaitForOutputAsync(o => o.Contains("worker-1 started again", StringComparison.Ordinal), TimeSpan.FromMinutes(1));

        foreach (var (panel, expr) in queries)
        {
            var result = await prometheus.WaitForSeriesAsync(expr, TimeSpan.FromSeconds(90));
            output.WriteLine($"{panel}: {expr} → {result.GetArrayLength()} series");
        }
        // The recoveries panel saw the kill as what it was.
        await prometheus.WaitForSeriesAsync("sum by (cause) (increase(pretrain_recoveries_total{cause=\"lost\"}[10m])) > 0", TimeSpan.FromSeconds(60));
    }

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }
}
