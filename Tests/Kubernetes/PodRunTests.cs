using System.Text.RegularExpressions;
using k8s.Models;
using Pretrain.Coordinator.Summary;
using Pretrain.Tests.Infrastructure;
using Xunit;
using Xunit.Abstractions;

namespace Pretrain.Tests.Kubernetes;

/// <summary>
/// The rendered base, run (issue 13): PostgreSQL, the prepare Job, the coordinator and the worker Job as
/// namespaced processes started from their manifests (<see cref="PodRun"/>). The job completes through a
/// SIGTERM of one worker pod (preemption: it leaves, exits 143, the Job replaces it) and a SIGKILL of another
/// (counted against the backoff limit, replaced), and a Prometheus scraping by the PodMonitor's port names sees
/// every pod. The recipe ConfigMap is shortened (60 steps of batch 64) so the run takes about a minute.
/// </summary>
public sealed class PodRunTests(ITestOutputHelper output) : IDisposable
{
    readonly string _root = Directory.CreateTempSubdirectory("pretrain-pods-").FullName;

    static string Shorten(string recipe)
    {
        recipe = Regex.Replace(recipe, @"(?m)^steps: \d+", "steps: 60");
        recipe = Regex.Replace(recipe, @"(?m)^(\s+warmup_steps: )\d+", "${1}2");
        recipe = Regex.Replace(recipe, @"(?m)^(\s+global: )\d+", "${1}64");
        recipe = Regex.Replace(recipe, @"(?m)^(checkpoint:\n\s+every: )\d+", "${1}10");
        return Regex.Replace(recipe, @"(?m)^(\s+knn_train_samples: )\d+", "${1}2000");
    }

    [NetnsFact]
    public async Task The_rendered_base_runs_to_completion_through_a_SIGTERM_and_a_SIGKILL_and_Prometheus_scrapes_every_pod()
    {
        var objects = Manifests.Load(Manifests.Render(Path.Combine(RepoPaths.Root, "k8s", "base")));
        var recipe = objects.OfType<V1ConfigMap>().Single(c => c.Name() == "pretrain-recipe");
        recipe.Data["recipe.yaml"] = Shorten(recipe.Data["recipe.yaml"]);
        using var run = PodRun.Create(objects, _root);
        await run.StartPostgresAsync("pretrain-postgres-0", "pretrain-postgres", "pretrain-postgres", "connection");

        // As `kubectl apply` does, everything at once: the workers' init container waits for the prepared data.
        var prepare = await run.StartPodAsync("pretrain-prepare", "pretrain-prepare");
        var coordinator = await run.StartPodAsync("pretrain-coordinator", "pretrain-coordinator-0");
        var prometheusDirectory = Directory.CreateDirectory(Path.Combine(_root, "prometheus")).FullName;
        using var prometheus = run.StartPrometheus(prometheusDirectory);
        var pods = new List<(int Index, CliProcess Process)>();
        var job = run.RunJobAsync("pretrain-workers", TimeSpan.FromMinutes(10), (i, p) => { lock (pods) pods.Add((i, p)); });

        var checkpoints = Path.Combine(run.Claim("pretrain-runs"), "pretrain", "checkpoints");
        async Task WaitForCheckpoint(long step)
        {
            var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(5);
            while (!Directory.Exists(Path.Combine(checkpoints, $"step-{step:D8}")))
            {
                if (job.IsFaulted) await job;                                         // the Job failed: say why
                if (coordinator.HasExited) throw new InvalidOperationException("the coordinator exited:\n" + coordinator.Output);
                if (DateTime.UtcNow > deadline) throw new TimeoutException($"no checkpoint {step}:\n--- coordinator:\n{coordinator.Output}\n--- prepare:\n{prepare.Output}");
                await Task.Delay(200);
            }
        }
        CliProcess Current(int index) { lock (pods) return pods.Last(p => p.Index == index).Process; }

        await WaitForCheckpoint(10);
        NetnsCluster.Signal(Current(0), NetnsCluster.SigTerm);                                    // preempted: finishes its step, leaves, exits 143
        // Its replacement joins as a newcomer (generation 3, 2 workers again) and trains, so it holds the state, before
        // the other is killed: a lone holder killed would leave no replica in memory, and the job would rightly fail.
        await coordinator.WaitForOutputAsync(o => Regex.Match(o, @"generation 3: 2 worker\(s\) \([^)]*\) from step (\d+)").Success, TimeSpan.FromMinutes(2));
        var joinedAt = long.Parse(Regex.Match(coordinator.Output, @"generation 3: 2 worker\(s\) \([^)]*\) from step (\d+)").Groups[1].Value);
        await WaitForCheckpoint((joinedAt / 10 + 1) * 10);
        NetnsCluster.Signal(Current(1), NetnsCluster.SigKill);                                    // lost
        var coordinatorExit = coordinator.WaitAsync(TimeSpan.FromMinutes(10));
        if (await Task.WhenAny(job, coordinatorExit) == coordinatorExit && await coordinatorExit != 0)
            Assert.Fail($"the coordinator exited {await coordinatorExit} before the worker Job completed:\n{coordinator.Output}");
        var (replaced, counted) = await job;
        Assert.True(await coordinatorExit == 0, coordinator.Output);

        var summary = RunSummary.Read(Path.Combine(run.Claim("pretrain-runs"), "pretrain", "summary.json"));
        output.WriteLine($"replaced {replaced} pods ({counted} counted); generations: {string.Join("; ", summary.Generations.Select(g => $"{g.WorldSize} from {g.FirstStep} ({g.Cause})"))}");
        Assert.Equal("completed", summary.Status);
        Assert.Equal(60, summary.Steps);
        Assert.Contains(summary.Generations, g => g.Cause == "left");
        Assert.Contains(summary.Generations, g => g.Cause == "lost");
        Assert.Single(summary.ReplicaChecksums.Values.Distinct());
        Assert.Equal(143, await pods.First(p => p.Index == 0).Process.WaitAsync(TimeSpan.FromSeconds(10)));   // --preempted-exit-code from the manifest
        Assert.True(replaced >= 2 && counted == 1, $"replaced {replaced}, counted {counted}: the SIGTERMed pod is ignored, the SIGKILLed one counted");
        Assert.Equal(0, await prepare.WaitAsync(TimeSpan.FromMinutes(1)));

        // Every pod was scraped through the PodMonitor's port name, and served the contract metrics.
        foreach (var pod in new[] { "pretrain-coordinator-0", "pretrain-workers-0", "pretrain-workers-1" })
        {
            var up = await run.QueryAsync($"max_over_time(up{{pod=\"{pod}\"}}[30m]) == 1");
            Assert.True(up.ValueKind == System.Text.Json.JsonValueKind.Array && up.GetArrayLength() == 1, $"{pod} was never scraped up:\n{prometheus.Output}");
            var steps = await run.QueryAsync($"max_over_time(pretrain_steps_total{{pod=\"{pod}\"}}[30m]) > 0");
            Assert.True(steps.ValueKind == System.Text.Json.JsonValueKind.Array && steps.GetArrayLength() == 1, $"{pod}: no pretrain_steps_total");
        }
    }

    public void Dispose()
    {
        try { Directory.Delete(_root, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
