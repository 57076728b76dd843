using System.Text.Json;
using System.Text.RegularExpressions;
using k8s;
using k8s.Models;
using Pretrain.Tests.Infrastructure;

namespace Pretrain.Tests.Kubernetes;

/// <summary>
/// The rendered manifests run as processes, the closest this machine comes to a cluster: every pod a network
/// namespace of its own (its own IP; pod and Service DNS names in every pod's /etc/hosts, as cluster DNS would
/// answer), each container started with its own args and env — literals, $(VAR) references, the downward
/// API (podIP, name, the Job's completion index), Secrets and ConfigMaps — and its volumes as folders here
/// (container paths in env, args and mounted files mapped to them). Our CLI stands in for the image's
/// entrypoint; PostgreSQL is a real server in the postgres pod's namespace; the Job controller is played by
/// <see cref="RunJobAsync"/> (replacements by the podFailurePolicy, a backoff limit).
/// </summary>
public sealed class PodRun : IDisposable
{
    const string Namespace = "pretrain";
    readonly NetnsCluster _cluster;
    readonly string _root;
    readonly Dictionary<string, string> _secretOverrides;
    readonly List<IKubernetesObject<V1ObjectMeta>> _objects;
    readonly Dictionary<string, string> _paths = [];        // container path → folder here
    string? _postgresDirectory;

    PodRun(NetnsCluster cluster, string root, List<IKubernetesObject<V1ObjectMeta>> objects, Dictionary<string, string> secretOverrides) =>
        (_cluster, _root, _objects, _secretOverrides) = (cluster, root, objects, secretOverrides);

    /// <summary>One namespace per pod of <paramref name="objects"/> (StatefulSet replicas, Job indices) plus one for Prometheus.</summary>
    public static PodRun Create(List<IKubernetesObject<V1ObjectMeta>> objects, string root)
    {
        var pods = new List<string>();
        foreach (var s in objects.OfType<V1StatefulSet>())
            pods.AddRange(Enumerable.Range(0, s.Spec.Replicas ?? 1).Select(i => $"{s.Name()}-{i}"));
        foreach (var j in objects.OfType<V1Job>())
            pods.AddRange(j.Spec.CompletionMode == "Indexed" ? Enumerable.Range(0, j.Spec.Completions ?? 1).Select(i => $"{j.Name()}-{i}") : [j.Name()]);
        var cluster = NetnsCluster.Create([.. pods, "prometheus"]);
        var run = new PodRun(cluster, root, objects, []);
        try
        {
            // The names pods use: a StatefulSet pod under its governing Service, a Service with one pod by its name.
            foreach (var s in objects.OfType<V1StatefulSet>())
                for (var i = 0; i < (s.Spec.Replicas ?? 1); i++)
                {
                    string[] names = [$"{s.Name()}-{i}.{s.Spec.ServiceName}.{Namespace}.svc.cluster.local", $"{s.Name()}-{i}.{s.Spec.ServiceName}"];
                    cluster.AddNames($"{s.Name()}-{i}", s.Spec.Replicas == 1 ? [.. names, s.Spec.ServiceName] : names);
                }
            // Every pod's volumes first, then the ConfigMaps' files: a file may name another pod's mount (the recipe's /data).
            foreach (var template in Manifests.PodTemplates(objects))
                foreach (var pod in run.PodsOf(template.Owner))
                    run.MapVolumes(template.Template.Spec, pod);
            run.WriteConfigMaps();
            return run;
        }
        catch
        {
            run.Dispose();
            throw;
        }
    }

    public NetnsCluster Cluster => _cluster;

    /// <summary>The folder here that stands for <paramref name="containerPath"/> of a PersistentVolumeClaim's volume.</summary>
    public string Claim(string claim) => Directory.CreateDirectory(Path.Combine(_root, "claims", claim)).FullName;

    /// <summary>
    /// Starts a real PostgreSQL in the pod <paramref name="pod"/>'s namespace (instead of the postgres image) and makes
    /// the Secret key <paramref name="secretKey"/> of <paramref name="secret"/> its connection string, by the Service name.
    /// </summary>
    public async Task StartPostgresAsync(string pod, string service, string secret, string secretKey)
    {
        _postgresDirectory = Directory.CreateTempSubdirectory("pretrain-pod-postgres-").FullName;
        var start = _cluster.StartCommand(pod, Path.Combine(RepoPaths.Root, "scripts", "postgres-start.sh"),
            new Dictionary<string, string> { ["PRETRAIN_POSTGRES_LISTEN"] = _cluster.Address(pod) }, _postgresDirectory);
        if (await start.WaitAsync(TimeSpan.FromMinutes(2)) != 0) throw new InvalidOperationException("PostgreSQL did not start:\n" + start.Output);
        var connection = start.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Last(l => l.StartsWith("Host=", StringComparison.Ordinal));
        _secretOverrides[$"{secret}/{secretKey}"] = connection.Replace($"Host={_cluster.Address(pod)}", $"Host={service}");
    }

    /// <summary>Starts the containers of <paramref name="owner"/>'s pod <paramref name="pod"/>: its init containers to completion first.</summary>
    public async Task<CliProcess> StartPodAsync(string owner, string pod, int? index = null)
    {
        var template = Manifests.PodTemplates(_objects).Single(p => p.Owner.EndsWith(" " + owner, StringComparison.Ordinal)).Template;
        foreach (var init in template.Spec.InitContainers ?? [])
        {
            var process = Start(pod, init, template, index);
            var code = await process.WaitAsync(TimeSpan.FromMinutes(5));
            if (code != 0) throw new InvalidOperationException($"init container {init.Name} of {pod} exited {code}:\n{process.Output}");
        }
        return Start(pod, template.Spec.Containers.Single(), template, index);
    }

    /// <summary>
    /// The Job controller for an Indexed Job: a pod per index; a pod that exits is judged by the podFailurePolicy
    /// (first matching rule), <c>Ignore</c> and counted failures below the backoff limit start a replacement;
    /// done when every index succeeded. <paramref name="onStarted"/> sees each pod as it starts.
    /// </summary>
    public async Task<(int Replaced, int Counted)> RunJobAsync(string job, TimeSpan timeout, Action<int, CliProcess>? onStarted = null)
    {
        var spec = _objects.OfType<V1Job>().Single(j => j.Name() == job).Spec;
        var running = new Dictionary<int, CliProcess>();
        for (var i = 0; i < (spec.Completions ?? 1); i++)
        {
            running[i] = await StartPodAsync(job, $"{job}-{i}", i);
            onStarted?.Invoke(i, running[i]);
        }
        int replaced = 0, counted = 0;
        var deadline = DateTime.UtcNow + timeout;
        while (running.Count > 0)
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"Job {job} did not complete within {timeout}:\n" + string.Join("\n", running.Select(r => $"--- index {r.Key}:\n{r.Value.Output}")));
            await Task.Delay(200);
            foreach (var (index, process) in running.Where(r => r.Value.HasExited).ToList())
            {
                var code = await process.WaitAsync(TimeSpan.FromSeconds(5));
                running.Remove(index);
                if (code == 0) continue;
                var rule = spec.PodFailurePolicy?.Rules.FirstOrDefault(r => r.OnExitCodes is { } e &&
                    (e.OperatorProperty == "In" ? e.Values.Contains(code) : !e.Values.Contains(code)));
                if (rule?.Action == "FailJob") throw new InvalidOperationException($"Job {job} failed: index {index} exited {code} (podFailurePolicy FailJob):\n{process.Output}");
                if (rule?.Action != "Ignore" && ++counted > (spec.BackoffLimit ?? 6)) throw new InvalidOperationException($"Job {job} failed: backoff limit reached");
                replaced++;
                running[index] = await StartPodAsync(job, $"{job}-{index}", index);
                onStarted?.Invoke(index, running[index]);
            }
        }
        return (replaced, counted);
    }

    /// <summary>A Prometheus in its own pod scraping what the PodMonitors select, by their port names, every second.</summary>
    public CliProcess StartPrometheus(string directory)
    {
        var targets = new List<string>();
        foreach (var monitor in _objects.OfType<PodMonitor>())
            foreach (var pods in Manifests.PodTemplates(_objects))
            {
                var labels = pods.Template.Metadata.Labels;
                if (!monitor.Spec.Selector.MatchLabels.All(l => labels.TryGetValue(l.Key, out var v) && v == l.Value)) continue;
                if (!(monitor.Spec.Selector.MatchExpressions ?? []).All(e => e.OperatorProperty == "In" && labels.TryGetValue(e.Key, out var v) && e.Values.Contains(v))) continue;
                foreach (var endpoint in monitor.Spec.PodMetricsEndpoints)
                {
                    var port = pods.Template.Spec.Containers.SelectMany(c => c.Ports ?? []).Single(p => p.Name == endpoint.Port).ContainerPort;
                    foreach (var pod in PodsOf(pods.Owner))
                        targets.Add($"      - targets: ['{_cluster.Address(pod)}:{port}']\n        labels: {{pod: '{pod}'}}");
                }
            }
        var config = Path.Combine(directory, "prometheus.yml");
        File.WriteAllText(config, $"global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\nscrape_configs:\n  - job_name: pods\n    static_configs:\n{string.Join("\n", targets)}\n");
        return _cluster.StartCommand("prometheus", PrometheusServer.Binary, new Dictionary<string, string>(),
            "--config.file=" + config, "--storage.tsdb.path=" + Path.Combine(directory, "data"), "--web.listen-address=127.0.0.1:9090", "--log.level=warn");
    }

    /// <summary>Runs a PromQL query inside the Prometheus pod (its port is on that namespace's loopback) and returns the result array.</summary>
    public async Task<JsonElement> QueryAsync(string promql)
    {
        var curl = _cluster.StartCommand("prometheus", "/usr/bin/curl", new Dictionary<string, string>(), "-sf", "--max-time", "5",
            "http://127.0.0.1:9090/api/v1/query?query=" + Uri.EscapeDataString(promql));
        if (await curl.WaitAsync(TimeSpan.FromSeconds(15)) != 0) return default;
        var json = curl.Output.Trim();
        if (json.Length == 0) return default;
        using var doc = JsonDocument.Parse(json);
        return doc.RootElement.GetProperty("data").GetProperty("result").Clone();
    }

    IEnumerable<string> PodsOf(string owner)
    {
        var name = owner.Split(' ')[1];
        if (_objects.OfType<V1StatefulSet>().FirstOrDefault(s => s.Name() == name) is { } set)
            return Enumerable.Range(0, set.Spec.Replicas ?? 1).Select(i => $"{name}-{i}");
        var job = _objects.OfType<V1Job>().Single(j => j.Name() == name);
        return job.Spec.CompletionMode == "Indexed" ? Enumerable.Range(0, job.Spec.Completions ?? 1).Select(i => $"{name}-{i}") : [name];
    }

    /// <summary>Folders for the pod's volumes: a claim's shared one, a ConfigMap's files (container paths in them mapped), an emptyDir.</summary>
    void MapVolumes(V1PodSpec spec, string pod)
    {
        var volumes = (spec.Volumes ?? []).ToDictionary(v => v.Name);
        foreach (var c in spec.Containers.Concat(spec.InitContainers ?? []))
            foreach (var mount in c.VolumeMounts ?? [])
            {
                if (mount.MountPath == "/tmp") continue;                                  // the machine's own /tmp will do
                if (!volumes.TryGetValue(mount.Name, out var volume))
                {
                    _paths[mount.MountPath] = Claim($"{mount.Name}-{pod}");             // a StatefulSet's volumeClaimTemplate
                    continue;
                }
                _paths[mount.MountPath] = volume switch
                {
                    { PersistentVolumeClaim: { } claim } => Claim(claim.ClaimName),
                    { ConfigMap: { } cm } => Path.Combine(_root, "configmaps", cm.Name),
                    { Secret: { } sv } => WriteSecret(sv.SecretName),
                    _ => Directory.CreateDirectory(Path.Combine(_root, "empty", pod, volume.Name)).FullName,
                };
            }
    }

    /// <summary>A Secret's keys as files (mode 0400, as defaultMode asks in the manifests), in a folder of its own.</summary>
    string WriteSecret(string name)
    {
        var folder = Directory.CreateDirectory(Path.Combine(_root, "secrets", name)).FullName;
        var secret = _objects.OfType<V1Secret>().Single(s => s.Name() == name);
        foreach (var (key, value) in secret.StringData ?? new Dictionary<string, string>())
        {
            var file = Path.Combine(folder, key);
            if (File.Exists(file)) continue;
            File.WriteAllText(file, value);
            if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(file, UnixFileMode.UserRead);
        }
        return folder;
    }

    void WriteConfigMaps()
    {
        foreach (var configMap in _objects.OfType<V1ConfigMap>())
        {
            var folder = Directory.CreateDirectory(Path.Combine(_root, "configmaps", configMap.Name())).FullName;
            foreach (var (file, text) in configMap.Data ?? new Dictionary<string, string>())
                File.WriteAllText(Path.Combine(folder, file), MapPaths(text));
        }
    }

    /// <summary>Container paths in <paramref name="text"/> replaced by their folders here (longest mount first).</summary>
    string MapPaths(string text)
    {
        foreach (var (path, folder) in _paths.OrderByDescending(p => p.Key.Length))
            text = Regex.Replace(text, $@"(?<![\w/]){Regex.Escape(path)}(?=/|\b|$)", folder.Replace("$", "$$"));
        return text;
    }

    CliProcess Start(string pod, V1Container container, V1PodTemplateSpec template, int? index)
    {
        var environment = new Dictionary<string, string>
        {
            ["HOSTNAME"] = pod,
            ["KUBERNETES_SERVICE_HOST"] = "10.96.0.1",                                   // what makes the CLI see a pod
            ["KUBERNETES_SERVICE_PORT"] = "443",
        };
        if (index is { } i) environment["JOB_COMPLETION_INDEX"] = i.ToString();
        foreach (var e in container.Env ?? [])
            environment[e.Name] = MapPaths(e.Value is { } literal ? Expand(literal, environment) : From(e.ValueFrom, pod, index));
        var args = (container.Args ?? []).Select(a => MapPaths(Expand(a, environment))).ToArray();
        var command = container.Command ?? [];
        if (container.Image.StartsWith("pretrain", StringComparison.Ordinal) && command.Count == 0)
            return _cluster.StartCommand(pod, RepoPaths.Cli, environment, args);      // the image's ENTRYPOINT
        return _cluster.StartCommand(pod, command[0], environment, [.. command.Skip(1).Select(a => MapPaths(Expand(a, environment))), .. args]);
    }

    string From(V1EnvVarSource source, string pod, int? index)
    {
        if (source.FieldRef is { } field)
            return field.FieldPath switch
            {
                "status.podIP" => _cluster.Address(pod),
                "metadata.name" => pod,
                "metadata.namespace" => Namespace,
                "metadata.annotations['batch.kubernetes.io/job-completion-index']" => index?.ToString() ?? throw new InvalidOperationException($"{pod} is not an indexed Job's pod"),
                var other => throw new NotSupportedException($"fieldRef {other} is not emulated"),
            };
        if (source.SecretKeyRef is { } sk)
        {
            if (_secretOverrides.TryGetValue($"{sk.Name}/{sk.Key}", out var overridden)) return overridden;
            var secret = _objects.OfType<V1Secret>().Single(s => s.Name() == sk.Name);
            return secret.StringData?.TryGetValue(sk.Key, out var value) == true ? value : System.Text.Encoding.UTF8.GetString(secret.Data[sk.Key]);
        }
        if (source.ConfigMapKeyRef is { } ck)
            return _objects.OfType<V1ConfigMap>().Single(c => c.Name() == ck.Name).Data[ck.Key];
        throw new NotSupportedException("an env valueFrom that is not emulated");
    }

    /// <summary>Kubernetes' $(VAR) expansion from the variables defined before (an undefined one stays as written).</summary>
    static string Expand(string value, Dictionary<string, string> defined) =>
        Regex.Replace(value, @"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", m => defined.TryGetValue(m.Groups[1].Value, out var v) ? v : m.Value);

    public void Dispose()
    {
        _cluster.Dispose();
        if (_postgresDirectory is not null)
            try { Directory.Delete(_postgresDirectory, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
