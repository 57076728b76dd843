using System.Net;
using Pretrain.Shared.Telemetry;
using Xunit;

namespace Pretrain.Tests.Cluster;

/// <summary>The probes on the metrics port (issue 13): /healthz while alive, /readyz by the process's own account, /metrics as before.</summary>
public sealed class HealthEndpointTests
{
    [Fact]
    public async Task Readyz_follows_the_readiness_it_is_given_and_healthz_answers_throughout()
    {
        var (ready, why) = (false, "joining the coordinator at c:4053");
        using var endpoint = MetricsEndpoint.Start("127.0.0.1", 0, () => (ready, why))!;
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{endpoint.Port}"), Timeout = TimeSpan.FromSeconds(10) };

        var notReady = await http.GetAsync("/readyz");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, notReady.StatusCode);
        Assert.Equal("not ready: joining the coordinator at c:4053\n", await notReady.Content.ReadAsStringAsync());
        var alive = await http.GetAsync("/healthz");
        Assert.Equal(HttpStatusCode.OK, alive.StatusCode);
        Assert.Equal("ok\n", await alive.Content.ReadAsStringAsync());

        (ready, why) = (true, "training");
        var nowReady = await http.GetAsync("/readyz");
        Assert.Equal(HttpStatusCode.OK, nowReady.StatusCode);
        Assert.Equal("ready: training\n", await nowReady.Content.ReadAsStringAsync());

        PretrainMetrics.Workers.Set(3);
        var metrics = await http.GetAsync("/metrics");
        Assert.Equal(HttpStatusCode.OK, metrics.StatusCode);
        Assert.StartsWith("text/plain; version=0.0.4", metrics.Content.Headers.ContentType!.ToString());
        Assert.Contains("\npretrain_workers 3", await metrics.Content.ReadAsStringAsync());

        var other = await http.GetAsync("/secrets");
        Assert.Equal(HttpStatusCode.NotFound, other.StatusCode);
        Assert.Contains("/metrics, /healthz and /readyz", await other.Content.ReadAsStringAsync());
    }
}
