using System.CommandLine;
using System.Diagnostics;
using k8s;
using k8s.Models;
using Pretrain.Cli;
using Pretrain.Cli.Commands;
using Pretrain.Shared.Recipes;
using Pretrain.Tests.Infrastructure;

namespace Pretrain.Tests.Kubernetes;

/// <summary>
/// k8s/ proved without a cluster: each kustomization rendered by the pinned kustomize (scripts/setup.sh), every
/// object loaded strictly into the Kubernetes typed models (KubernetesClient; our own models for the three
/// custom resources), so a misspelt field fails, and the references between objects checked as the API server
/// and the controllers would only find out at run time: selectors that select, ports and names that exist,
/// env variables the CLI reads, a ConfigMap that is a valid recipe.
/// </summary>
public static class Manifests
{
    public static string Kustomize => Environment.GetEnvironmentVariable("PRETRAIN_KUSTOMIZE") is { Length: > 0 } k
        ? k : Path.Combine(RepoPaths.Root, ".artifacts", "tools", "kustomize");

    /// <summary>The objects <c>kustomize build</c> renders from <paramref name="directory"/>, as YAML.</summary>
    public static string Render(string directory)
    {
        if (!File.Exists(Kustomize))
            throw new FileNotFoundException($"{Kustomize} is missing: ./test.sh fetches the pinned kustomize (scripts/setup.sh ensure_kustomize)");
        var info = new ProcessStartInfo(Kustomize) { RedirectStandardOutput = true, RedirectStandardError = true };
        info.ArgumentList.Add("build");
        info.ArgumentList.Add(directory);
        using var process = Process.Start(info)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromSeconds(60)))
        {
            process.Kill();
            throw new TimeoutException($"kustomize build {directory} did not finish within 60 s");
        }
        if (process.ExitCode != 0) throw new InvalidDataException($"kustomize build {directory}: {error.Result.Trim()}");
        return output.Result;
    }

    /// <summary>Kubernetes' own kinds plus the custom resources the overlays use.</summary>
    static readonly Dictionary<string, Type> CustomResources = new()
    {
        ["monitoring.coreos.com/v1/PodMonitor"] = typeof(PodMonitor),
        ["scheduling.volcano.sh/v1beta1/PodGroup"] = typeof(PodGroup),
        ["kueue.x-k8s.io/v1beta1/LocalQueue"] = typeof(LocalQueue),
    };

    /// <summary>Loads every object strictly: an unknown field or kind fails naming it.</summary>
    public static List<IKubernetesObject<V1ObjectMeta>> Load(string yaml) =>
        [.. KubernetesYaml.LoadAllFromString(yaml, CustomResources, strict: true).Cast<IKubernetesObject<V1ObjectMeta>>()];

    /// <summary>A workload's pod template, named by its owner.</summary>
    public sealed record Pods(string Owner, V1PodTemplateSpec Template);

    public static IEnumerable<Pods> PodTemplates(IEnumerable<IKubernetesObject<V1ObjectMeta>> objects) => objects.Select(o => o switch
    {
        V1StatefulSet s => new Pods($"StatefulSet {s.Name()}", s.Spec.Template),
        V1Job j => new Pods($"Job {j.Name()}", j.Spec.Template),
        V1Deployment d => new Pods($"Deployment {d.Name()}", d.Spec.Template),
        _ => null,
    }).OfType<Pods>();

    /// <summary>Every broken reference among <paramref name="objects"/>, each naming the object and the field.</summary>
    public static List<string> Problems(IReadOnlyList<IKubernetesObject<V1ObjectMeta>> objects)
    {
        var problems = new List<string>();
        var pods = PodTemplates(objects).ToList();
        var services = objects.OfType<V1Service>().ToList();
        var secrets = objects.OfType<V1Secret>().ToDictionary(s => s.Name(), s => (s.StringData?.Keys ?? []).Concat(s.Data?.Keys ?? []).ToHashSet());
        var configMaps = objects.OfType<V1ConfigMap>().ToDictionary(c => c.Name(), c => (c.Data?.Keys ?? []).ToHashSet());
        var claims = objects.OfType<V1PersistentVolumeClaim>().Select(c => c.Name()).ToHashSet();
        var root = Program.Commands(PlanCatalog.Product);

        List<Pods> Selected(IDictionary<string, string>? labels, string who)
        {
            var matching = pods.Where(p => labels is { Count: > 0 } && labels.All(l => p.Template.Metadata?.Labels?.TryGetValue(l.Key, out var v) == true && v == l.Value)).ToList();
            if (matching.Count == 0) problems.Add($"{who}: selector {Show(labels)} selects no pod template");
            return matching;
        }
        List<Pods> SelectedBy(V1LabelSelector? selector, string who)
        {
            var byLabels = Selected(selector?.MatchLabels, who);
            return [.. byLabels.Where(p => (selector?.MatchExpressions ?? []).All(e => Matches(e, p.Template.Metadata.Labels)))];
        }
        static IEnumerable<V1ContainerPort> PortsOf(Pods p) => p.Template.Spec.Containers.SelectMany(c => c.Ports ?? []);
        static bool HasPort(Pods p, string port) =>
            PortsOf(p).Any(cp => int.TryParse(port, out var n) ? cp.ContainerPort == n : cp.Name == port);

        foreach (var p in pods)
        {
            var spec = p.Template.Spec;
            var volumes = (spec.Volumes ?? []).ToDictionary(v => v.Name);
            var templateClaims = objects.OfType<V1StatefulSet>().Where(s => s.Spec.Template == p.Template)
                .SelectMany(s => s.Spec.VolumeClaimTemplates ?? []).Select(c => c.Name()).ToHashSet();
            foreach (var volume in volumes.Values)
            {
                if (volume.ConfigMap is { } cm && !configMaps.ContainsKey(cm.Name)) problems.Add($"{p.Owner}: volume {volume.Name} names ConfigMap {cm.Name}, which is not rendered");
                if (volume.Secret is { } sv && !secrets.ContainsKey(sv.SecretName)) problems.Add($"{p.Owner}: volume {volume.Name} names Secret {sv.SecretName}, which is not rendered");
                if (volume.PersistentVolumeClaim is { } pvc && !claims.Contains(pvc.ClaimName)) problems.Add($"{p.Owner}: volume {volume.Name} names PersistentVolumeClaim {pvc.ClaimName}, which is not rendered");
            }
            if (spec.Subdomain is { } sub && !services.Any(s => s.Name() == sub && s.Spec.ClusterIP == "None"))
                problems.Add($"{p.Owner}: subdomain {sub} is not a headless Service");
            foreach (var c in spec.Containers.Concat(spec.InitContainers ?? []))
            {
                var ports = (c.Ports ?? []).Select(cp => cp.Name).ToHashSet();
                foreach (var mount in c.VolumeMounts ?? [])
                    if (!volumes.ContainsKey(mount.Name) && !templateClaims.Contains(mount.Name))
                        problems.Add($"{p.Owner}: container {c.Name} mounts volume {mount.Name}, which the pod does not declare");
                foreach (var (kind, probe) in new[] { ("liveness", c.LivenessProbe), ("readiness", c.ReadinessProbe), ("startup", c.StartupProbe) })
                    if (probe?.HttpGet?.Port is { } port && !int.TryParse(port.Value, out _) && !ports.Contains(port.Value))
                        problems.Add($"{p.Owner}: container {c.Name}'s {kind} probe uses port {port.Value}, which the container does not name");
                foreach (var e in c.Env ?? [])
                {
                    if (e.ValueFrom?.SecretKeyRef is { } sk && !(secrets.TryGetValue(sk.Name, out var keys) && keys.Contains(sk.Key)))
                        problems.Add($"{p.Owner}: env {e.Name} reads key {sk.Key} of Secret {sk.Name}, which is not rendered");
                    if (e.ValueFrom?.ConfigMapKeyRef is { } ck && !(configMaps.TryGetValue(ck.Name, out var ckeys) && ckeys.Contains(ck.Key)))
                        problems.Add($"{p.Owner}: env {e.Name} reads key {ck.Key} of ConfigMap {ck.Name}, which is not rendered");
                }
                if (c.Image?.StartsWith("pretrain", StringComparison.Ordinal) == true && c.Command is null)
                    problems.AddRange(CliEnvironment(root, p.Owner, c));
            }
        }
        foreach (var s in services)
            foreach (var selected in new[] { Selected(s.Spec.Selector, $"Service {s.Name()}") })
                foreach (var port in s.Spec.Ports ?? [])
                    if (selected.Count > 0 && !selected.Any(p => HasPort(p, port.TargetPort?.Value ?? port.Port.ToString())))
                        problems.Add($"Service {s.Name()}: port {port.Name} targets {port.TargetPort?.Value ?? port.Port.ToString()}, which no selected pod's container has");
        foreach (var set in objects.OfType<V1StatefulSet>())
            if (!services.Any(s => s.Name() == set.Spec.ServiceName && s.Spec.ClusterIP == "None"))
                problems.Add($"StatefulSet {set.Name()}: serviceName {set.Spec.ServiceName} is not a headless Service");
        foreach (var job in objects.OfType<V1Job>())
            foreach (var rule in job.Spec.PodFailurePolicy?.Rules ?? [])
                if (rule.OnExitCodes?.ContainerName is { } name && job.Spec.Template.Spec.Containers.All(c => c.Name != name))
                    problems.Add($"Job {job.Name()}: podFailurePolicy names container {name}, which the pod does not have");
        foreach (var pdb in objects.OfType<V1PodDisruptionBudget>())
            SelectedBy(pdb.Spec.Selector, $"PodDisruptionBudget {pdb.Name()}");
        foreach (var monitor in objects.OfType<PodMonitor>())
        {
            var selected = SelectedBy(monitor.Spec.Selector, $"PodMonitor {monitor.Name()}");
            foreach (var endpoint in monitor.Spec.PodMetricsEndpoints)
                foreach (var p in selected.Where(p => PortsOf(p).All(cp => cp.Name != endpoint.Port)))
                    problems.Add($"PodMonitor {monitor.Name()}: port {endpoint.Port} is not a port name of {p.Owner}");
        }
        foreach (var policy in objects.OfType<V1NetworkPolicy>())
        {
            var selected = policy.Spec.PodSelector.MatchLabels is { Count: > 0 } ? SelectedBy(policy.Spec.PodSelector, $"NetworkPolicy {policy.Name()}") : pods;
            foreach (var rule in policy.Spec.Ingress ?? [])
                foreach (var port in rule.Ports ?? [])
                    if (port.Port is { } target && port.EndPort is null && !selected.Any(p => HasPort(p, target.Value)))
                        problems.Add($"NetworkPolicy {policy.Name()}: ingress port {target.Value} is not a port of the pods it selects");
        }
        if (configMaps.ContainsKey("pretrain-recipe"))
        {
            var recipe = objects.OfType<V1ConfigMap>().Single(c => c.Name() == "pretrain-recipe").Data["recipe.yaml"];
            try { RecipeLoader.Parse(recipe, "/etc/pretrain/recipe.yaml"); }
            catch (RecipeException e) { problems.Add($"ConfigMap pretrain-recipe: recipe.yaml is not a valid recipe: {e.Message}"); }
        }
        return problems;
    }

    /// <summary>A container running our CLI: its args name a command, and every PRETRAIN_* variable is one of that command's options.</summary>
    static IEnumerable<string> CliEnvironment(RootCommand root, string owner, V1Container container)
    {
        Command command = root;
        foreach (var arg in container.Args ?? [])
            if (command.Subcommands.FirstOrDefault(s => s.Name == arg) is { } sub) command = sub;
            else break;
        if (command == root)
        {
            yield return $"{owner}: container {container.Name} runs pretrain without a command (args: {string.Join(' ', container.Args ?? [])})";
            yield break;
        }
        var variables = command.Options.Select(EnvironmentDefaults.VariableOf).ToHashSet();
        foreach (var e in container.Env ?? [])
            if (e.Name.StartsWith(EnvironmentDefaults.Prefix, StringComparison.Ordinal) && !variables.Contains(e.Name))
                yield return $"{owner}: container {container.Name} sets {e.Name}, which `pretrain {string.Join(' ', container.Args!.TakeWhile(a => !a.StartsWith('-')))}` does not read";
    }

    static bool Matches(V1LabelSelectorRequirement e, IDictionary<string, string>? labels)
    {
        var has = labels?.TryGetValue(e.Key, out var value) == true;
        value = has ? labels![e.Key] : null;
        return e.OperatorProperty switch
        {
            "In" => has && e.Values.Contains(value),
            "NotIn" => !has || !e.Values.Contains(value),
            "Exists" => has,
            "DoesNotExist" => !has,
            _ => false,
        };
    }

    static string Show(IDictionary<string, string>? labels) => labels is null ? "{}" : "{" + string.Join(", ", labels.Select(l => $"{l.Key}={l.Value}")) + "}";
}

// The custom resources' fields the manifests use, and no others: strict loading then catches a misspelt one.

public sealed class PodMonitor : IKubernetesObject<V1ObjectMeta>
{
    public string ApiVersion { get; set; } = "";
    public string Kind { get; set; } = "";
    public V1ObjectMeta Metadata { get; set; } = new();
    public PodMonitorSpec Spec { get; set; } = new();
}

public sealed class PodMonitorSpec
{
    public V1LabelSelector Selector { get; set; } = new();
    public List<PodMetricsEndpoint> PodMetricsEndpoints { get; set; } = [];
    public List<string>? PodTargetLabels { get; set; }
    public string? JobLabel { get; set; }
}

public sealed class PodMetricsEndpoint
{
    public string Port { get; set; } = "";
    public string? Path { get; set; }
    public string? Interval { get; set; }
    public string? ScrapeTimeout { get; set; }
}

public sealed class PodGroup : IKubernetesObject<V1ObjectMeta>
{
    public string ApiVersion { get; set; } = "";
    public string Kind { get; set; } = "";
    public V1ObjectMeta Metadata { get; set; } = new();
    public PodGroupSpec Spec { get; set; } = new();
}

public sealed class PodGroupSpec
{
    public int MinMember { get; set; }
    public string? Queue { get; set; }
    public string? PriorityClassName { get; set; }
}

public sealed class LocalQueue : IKubernetesObject<V1ObjectMeta>
{
    public string ApiVersion { get; set; } = "";
    public string Kind { get; set; } = "";
    public V1ObjectMeta Metadata { get; set; } = new();
    public LocalQueueSpec Spec { get; set; } = new();
}

public sealed class LocalQueueSpec
{
    public string ClusterQueue { get; set; } = "";
}
