namespace Pretrain.Cli.Runs;

/// <summary>
/// Where a coordinator in a Kubernetes pod is reached when no <c>--public-host</c> is given: the pod's DNS name
/// under its headless Service, <c>HOSTNAME.SUBDOMAIN</c> (a StatefulSet's pods get <c>subdomain</c> = its
/// <c>serviceName</c>), which resolves from any pod of the namespace. Akka addresses must match exactly, so
/// workers join that same name (the manifests set <c>PRETRAIN_COORDINATOR</c> to it). Kubernetes writes the
/// pod's full name into its <c>/etc/hosts</c> ("10.1.2.3 coordinator-0.coordinator.ns.svc.cluster.local
/// coordinator-0"); outside a pod (no <c>KUBERNETES_SERVICE_HOST</c>) there is no default.
/// </summary>
public static class PodAddress
{
    /// <summary>The pod's <c>HOSTNAME.SUBDOMAIN</c>, its bare host name when the pod has no subdomain, or null outside Kubernetes.</summary>
    public static string? DnsName(IReadOnlyDictionary<string, string?> environment, string hostsFile = "/etc/hosts")
    {
        if (environment.GetValueOrDefault("KUBERNETES_SERVICE_HOST") is not { Length: > 0 }) return null;
        var host = environment.GetValueOrDefault("HOSTNAME") is { Length: > 0 } h ? h : System.Net.Dns.GetHostName();
        if (!File.Exists(hostsFile)) return host;
        foreach (var line in File.ReadLines(hostsFile))
        {
            var names = line.Split('#')[0].Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries).Skip(1);
            foreach (var name in names)
                if (name.StartsWith(host + ".", StringComparison.Ordinal))
                {
                    var labels = name.Split('.');
                    return labels.Length >= 2 ? $"{labels[0]}.{labels[1]}" : host;
                }
        }
        return host;
    }

    /// <summary>This process's environment, as <see cref="DnsName"/> reads it.</summary>
    public static IReadOnlyDictionary<string, string?> Environment() =>
        System.Environment.GetEnvironmentVariables().Cast<System.Collections.DictionaryEntry>()
            .ToDictionary(e => (string)e.Key, e => e.Value as string);
}
