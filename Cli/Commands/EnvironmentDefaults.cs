using System.Collections;
using System.CommandLine;

namespace Pretrain.Cli.Commands;

/// <summary>
/// Options from the environment, so a Kubernetes manifest sets env rather than long argument lists: every
/// option <c>--some-name</c> of the command being run may come from <c>PRETRAIN_SOME_NAME</c>, and a flag on the
/// command line wins. Where a Kubeflow-style runtime (the training operator's PyTorchJob, torchrun's elastic
/// agent) injects its variables, they are read as the same facts: <c>PET_MASTER_ADDR</c>[:<c>PET_MASTER_PORT</c>]
/// is the coordinator a worker joins, <c>PET_NNODES</c> the number of workers, <c>PET_NODE_RANK</c> a worker's id.
/// A <c>PRETRAIN_*</c> variable wins over a <c>PET_*</c> one.
/// </summary>
public static class EnvironmentDefaults
{
    public const string Prefix = "PRETRAIN_";

    /// <summary>The variable an option may come from: <c>--coordinator-timeout</c> → <c>PRETRAIN_COORDINATOR_TIMEOUT</c>.</summary>
    public static string VariableOf(Option option) =>
        Prefix + option.Name.TrimStart('-').Replace('-', '_').ToUpperInvariant();

    /// <summary>An option filled in from the environment: which variable, and the value it gave.</summary>
    public readonly record struct Source(string Option, string Variable, string Value);

    /// <summary>
    /// <paramref name="args"/> with <c>--option value</c> appended for every option of the command they name that
    /// they leave out and the environment sets; <paramref name="sources"/> says which, for error messages.
    /// </summary>
    public static string[] Apply(RootCommand root, string[] args, IDictionary environment, out IReadOnlyList<Source> sources)
    {
        var parsed = root.Parse(args);
        var command = parsed.CommandResult.Command;
        var found = new List<Source>();
        if (command != root)
            foreach (var option in command.Options)
            {
                if (parsed.GetResult(option) is { Implicit: false }) continue;    // given on the command line: the flag wins
                if (ValueFor(command.Name, option, environment) is not { } source) continue;
                found.Add(source with { Value = Normalise(source.Value, option) });
            }
        sources = found;
        return [.. args, .. found.SelectMany(s => new[] { s.Option, s.Value })];
    }

    /// <summary>Adds "[env: PRETRAIN_…]" to the help text of every option of every subcommand.</summary>
    public static void Describe(RootCommand root)
    {
        foreach (var command in root.Subcommands)
            foreach (var option in command.Options)
                if (option.Name.StartsWith("--", StringComparison.Ordinal) && option.Name != "--help")
                    option.Description = $"{option.Description} [env: {VariableOf(option)}]";
    }

    private static Source? ValueFor(string command, Option option, IDictionary environment)
    {
        var variable = VariableOf(option);
        if (Read(environment, variable) is { } value) return new Source(option.Name, variable, value);
        return (command, option.Name) switch
        {
            ("worker", "--coordinator") when Read(environment, "PET_MASTER_ADDR") is { } host =>
                new Source(option.Name, "PET_MASTER_ADDR", host.Contains(':') ? host : $"{host}:{Read(environment, "PET_MASTER_PORT") ?? "4053"}"),
            ("worker", "--worker-id") when Read(environment, "PET_NODE_RANK") is { } rank =>
                new Source(option.Name, "PET_NODE_RANK", $"worker-{rank}"),
            ("coordinator", "--workers") when Read(environment, "PET_NNODES") is { } nodes =>
                new Source(option.Name, "PET_NNODES", nodes.Split(':')[^1]),              // "2" or torchrun's elastic "1:4": the most
            _ => null,
        };
    }

    /// <summary>A boolean flag takes true/false on the command line; the environment's usual 1/0 and yes/no mean the same.</summary>
    private static string Normalise(string value, Option option)
    {
        if (option.ValueType != typeof(bool)) return value;
        return value.Trim().ToLowerInvariant() switch
        {
            "1" or "yes" or "on" or "true" => "true",
            "0" or "no" or "off" or "false" => "false",
            _ => value,                                                          // the parser then names the option and the value
        };
    }

    private static string? Read(IDictionary environment, string name) =>
        environment[name] is string { Length: > 0 } value ? value : null;
}
