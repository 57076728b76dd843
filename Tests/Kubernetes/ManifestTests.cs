using System.Text.Json;
using k8s.Models;
using Pretrain.Tests.Infrastructure;
using Xunit;
using Xunit.Abstractions;

namespace Pretrain.Tests.Kubernetes;

/// <summary>Every kustomization of k8s/ renders, loads into the typed models and holds together (issue 13); broken copies do not.</summary>
public sealed class ManifestTests(ITestOutputHelper output) : IDisposable
{
    readonly string _copy = Directory.CreateTempSubdirectory("pretrain-k8s-").FullName;

    static string K8s(string path) => Path.Combine(RepoPaths.Root, "k8s", path);

    public static TheoryData<string> Kustomizations => ["base", "overlays/gpu", "overlays/volcano", "overlays/kueue", "grafana"];

    [Theory]
    [MemberData(nameof(Kustomizations))]
    public void Every_kustomization_renders_loads_strictly_and_its_references_hold(string kustomization)
    {
        var objects = Manifests.Load(Manifests.Render(K8s(kustomization)));
        output.WriteLine(string.Join("\n", objects.Select(o => $"{o.Kind} {o.Name()}")));
        Assert.NotEmpty(objects);
        var problems = Manifests.Problems(objects);
        Assert.True(problems.Count == 0, string.Join("\n", problems));
    }

    [Fact]
    public void The_base_is_the_job_the_issue_describes()
    {
        var objects = Manifests.Load(Manifests.Render(K8s("base")));
        Assert.All(objects.Where(o => o.Kind != "Namespace"), o => Assert.Equal("pretrain", o.Namespace()));
        var coordinator = objects.OfType<V1StatefulSet>().Single(s => s.Name() == "pretrain-coordinator");
        Assert.Equal(1, coordinator.Spec.Replicas);
        var workers = objects.OfType<V1Job>().Single(j => j.Name() == "pretrain-workers");
        Assert.Equal("Indexed", workers.Spec.CompletionMode);
        var worker = workers.Spec.Template.Spec.Containers.Single();
        var env = worker.Env.ToDictionary(e => e.Name);

        // Akka addresses must match exactly: workers join the name the coordinator advertises in its pod (PodAddress).
        var coordinatorEnv = coordinator.Spec.Template.Spec.Containers.Single().Env.ToDictionary(e => e.Name);
        Assert.Equal($"{coordinator.Name()}-0.{coordinator.Spec.ServiceName}:{coordinatorEnv["PRETRAIN_PORT"].Value}", env["PRETRAIN_COORDINATOR"].Value);
        Assert.False(coordinatorEnv.ContainsKey("PRETRAIN_PUBLIC_HOST"));
        Assert.Equal("status.podIP", env["PRETRAIN_HOST"].ValueFrom.FieldRef.FieldPath);
        Assert.Equal(workers.Spec.Completions.ToString(), coordinatorEnv["PRETRAIN_WORKERS"].Value);

        // Exit codes: bad input or a failed job fail the Job; preemption and lost peers replace the pod.
        var rules = workers.Spec.PodFailurePolicy.Rules;
        Assert.Equal("FailJob", rules.Single(r => r.OnExitCodes?.Values.Contains(2) == true).Action);
        Assert.Equal("Ignore", rules.Single(r => r.OnExitCodes?.Values.Contains(143) == true).Action);
        Assert.Equal("143", env["PRETRAIN_PREEMPTED_EXIT_CODE"].Value);
        Assert.Contains(rules, r => r.Action == "Ignore" && r.OnPodConditions?.Any(c => c.Type == "DisruptionTarget") == true);
        Assert.Equal("Never", workers.Spec.Template.Spec.RestartPolicy);
        Assert.True(workers.Spec.Template.Spec.TerminationGracePeriodSeconds >= 30);

        foreach (var pods in Manifests.PodTemplates(objects).Where(p => p.Template.Spec.Containers.Any(c => c.Image.StartsWith("pretrain"))))
            Assert.True(pods.Template.Spec.SecurityContext?.RunAsNonRoot == true, $"{pods.Owner} must run as non-root");
        Assert.Contains(objects, o => o is PodMonitor);
        Assert.Contains(objects, o => o is V1NetworkPolicy);
        Assert.Equal(2, objects.OfType<V1PodDisruptionBudget>().Count());
    }

    /// <summary>Copies k8s/ and applies <paramref name="edit"/> to one file of the copy.</summary>
    string Broken(string file, Func<string, string> edit)
    {
        foreach (var path in Directory.GetFiles(K8s(""), "*", SearchOption.AllDirectories))
        {
            var target = Path.Combine(_copy, Path.GetRelativePath(K8s(""), path));
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(path, target);
        }
        var changed = Path.Combine(_copy, file);
        var text = File.ReadAllText(changed);
        var edited = edit(text);
        Assert.NotEqual(text, edited);                              // the breakage really happened
        File.WriteAllText(changed, edited);
        return Path.Combine(_copy, "base");
    }

    [Fact]
    public void A_misspelt_field_fails_loading_naming_it()
    {
        var yaml = Manifests.Render(Broken("base/workers.yaml", t => t.Replace("terminationGracePeriodSeconds:", "terminationGracePeriodSecond:")));
        var error = Assert.ThrowsAny<Exception>(() => Manifests.Load(yaml));
        Assert.Contains("terminationGracePeriodSecond", error.ToString());
    }

    [Theory]
    [InlineData("base/workers.yaml", "      targetPort: metrics", "      targetPort: metrix", "Service pretrain-workers: port metrics targets metrix")]
    [InlineData("base/podmonitor.yaml", "port: metrics", "port: prometheus", "PodMonitor pretrain: port prometheus is not a port name of")]
    [InlineData("base/workers.yaml", "PRETRAIN_DATA_PORT", "PRETRAIN_DATA_PROT", "sets PRETRAIN_DATA_PROT, which `pretrain worker` does not read")]
    [InlineData("base/coordinator.yaml", "key: connection", "key: connect", "env PRETRAIN_JOURNAL reads key connect of Secret pretrain-postgres")]
    [InlineData("base/recipe.yaml", "method: simclr", "method: dino", "ConfigMap pretrain-recipe: recipe.yaml is not a valid recipe")]
    public void A_broken_reference_fails_the_checks_naming_the_object_and_field(string file, string from, string to, string expected)
    {
        var problems = Manifests.Problems(Manifests.Load(Manifests.Render(Broken(file, t => t.Replace(from, to)))));
        output.WriteLine(string.Join("\n", problems));
        Assert.Contains(problems, p => p.Contains(expected, StringComparison.Ordinal));
    }

    [Fact]
    public void The_dashboard_ConfigMap_carries_the_dashboard_and_every_panel_has_a_query()
    {
        var json = File.ReadAllText(K8s("grafana/pretrain.json"));
        var configMap = Manifests.Load(Manifests.Render(K8s("grafana"))).OfType<V1ConfigMap>().Single();
        Assert.Equal("1", configMap.Metadata.Labels["grafana_dashboard"]);
        Assert.Equal(json, configMap.Data["pretrain.json"]);
        var queries = DashboardQueries(json);
        Assert.True(queries.Count >= 10, $"{queries.Count} queries");
        Assert.All(queries, q => Assert.DoesNotContain("$", q.Expr));   // runnable against a plain Prometheus (the scrape test)
    }

    /// <summary>Every panel's title and PromQL expressions.</summary>
    public static List<(string Panel, string Expr)> DashboardQueries(string json)
    {
        using var doc = JsonDocument.Parse(json);
        var found = new List<(string, string)>();
        void Walk(JsonElement panels)
        {
            foreach (var panel in panels.EnumerateArray())
            {
                if (panel.TryGetProperty("panels", out var inner)) Walk(inner);
                if (!panel.TryGetProperty("targets", out var targets)) continue;
                foreach (var target in targets.EnumerateArray())
                    if (target.TryGetProperty("expr", out var expr))
                        found.Add((panel.GetProperty("title").GetString()!, expr.GetString()!));
            }
        }
        Walk(doc.RootElement.GetProperty("panels"));
        return found;
    }

    public void Dispose()
    {
        try { Directory.Delete(_copy, recursive: true); } catch (IOException) { }
    }
}
