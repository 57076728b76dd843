using System.Text.RegularExpressions;
using Pretrain.Tests.Infrastructure;
using Xunit;

namespace Pretrain.Tests.Cluster;

/// <summary>A real Prometheus server scrapes the coordinator and the workers of a running job.</summary>
public sealed class MetricsScrapeTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("pretrain-metrics-").FullName;

    [Fact]
    public async Task Prometheus_scrapes_the_contract_metrics_from_the_coordinator_and_every_worker()
    {
        Assert.True(PrometheusServer.IsInstalled, $"{PrometheusServer.Binary} is missing: ./test.sh installs Debian's prometheus package");
        using var cli = CliProcess.Start("local", "--recipe", LongRecipe.Write(_dir), "--workers", "2",
            "--run-dir", Path.Combine(_dir, "run"), "--metrics-port", "0", "--worker-metrics-port", "0");
        await cli.WaitForOutputAsync(o => Regex.Matches(o, @"metrics on http://").Count >= 3 && LongRecipe.LastStep(o) >= 1, TimeSpan.FromMinutes(2));
        var endpoints = Regex.Matches(cli.Output, @"(coordinator )?metrics on http://([\d.]+:\d+)/metrics")
            .Select(m => (Coordinator: m.Groups[1].Success, Target: m.Groups[2].Value)).Distinct().ToList();
        string coordinator = endpoints.Single(e => e.Coordinator).Target;
        var workers = endpoints.Where(e => !e.Coordinator).Select(e => e.Target).ToList();
        Assert.Equal(2, workers.Count);

        using var prometheus = new PrometheusServer([coordinator, .. workers]);
        var timeout = TimeSpan.FromSeconds(60);
        foreach (string worker in workers)
        {
            foreach (string metric in new[] { "pretrain_steps_total", "pretrain_loss", "pretrain_samples_per_second", "pretrain_allreduce_bytes_total", "pretrain_workers" })
                await prometheus.WaitForSeriesAsync($"{metric}{{instance=\"{worker}\"}}", timeout);
            foreach (string phase in new[] { "data", "forward", "backward", "allreduce", "optimizer" })
                await prometheus.WaitForSeriesAsync($"pretrain_step_phase_seconds_count{{instance=\"{worker}\",phase=\"{phase}\"}} > 0", timeout);
            await prometheus.WaitForSeriesAsync($"pretrain_allreduce_bytes_total{{instance=\"{worker}\"}} > 0", timeout);
        }
        await prometheus.WaitForSeriesAsync($"pretrain_workers{{instance=\"{coordinator}\"}} == 2", timeout);
        await prometheus.WaitForSeriesAsync($"pretrain_steps_total{{instance=\"{coordinator}\"}} > 0", timeout);
        await prometheus.WaitForSeriesAsync($"pretrain_loss{{instance=\"{coordinator}\"}}", timeout);

        // The same running job, asked through `pretrain status`.
        var (code, status) = await CliProcess.RunAsync(TimeSpan.FromSeconds(30), "status", "--run-dir", Path.Combine(_dir, "run"));
        Assert.True(code == 0, status);
        Assert.Matches(@"phase\s+Running", status);
        Assert.Matches(@"workers\s+2: worker-[01], worker-[01]", status);   // in registration order

        // The same ports answer Kubernetes' probes: alive, and ready — the workers training, the coordinator with its job.
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        foreach (string target in workers.Append(coordinator))
        {
            Assert.Equal("ok\n", await http.GetStringAsync($"http://{target}/healthz"));
            var ready = await http.GetAsync($"http://{target}/readyz");
            string body = await ready.Content.ReadAsStringAsync();
            Assert.True(ready.IsSuccessStatusCode, $"{target}/readyz: {(int)ready.StatusCode} {body}");
            Assert.StartsWith(target == coordinator ? "ready: job 'job-" : "ready: training", body);
        }
    }

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }
}
