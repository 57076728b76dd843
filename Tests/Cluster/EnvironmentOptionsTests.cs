using System.Collections;
using System.CommandLine;
using Pretrain.Cli;
using Pretrain.Cli.Commands;
using Pretrain.Cli.Runs;
using Pretrain.Tests.Infrastructure;
using Pretrain.Tests.Training;
using Xunit;

namespace Pretrain.Tests.Cluster;

/// <summary>
/// Options from the environment (issue 13): a manifest sets PRETRAIN_* (or a Kubeflow runtime PET_*) instead of
/// arguments; flags win; a bad value is refused naming the option and the variable it came from.
/// </summary>
public sealed class EnvironmentOptionsTests
{
    static readonly RootCommand Root = Program.Commands(PlanCatalog.Product);

    static ParseResult Parse(string[] args, params (string Name, string Value)[] environment)
    {
        var variables = new Hashtable();
        foreach (var (name, value) in environment) variables[name] = value;
        return Root.Parse(EnvironmentDefaults.Apply(Root, args, variables, out _));
    }

    static T? Value<T>(ParseResult parsed, string option) =>
        parsed.GetValue<T>(parsed.CommandResult.Command.Options.OfType<Option<T>>().Single(o => o.Name == option));

    [Fact]
    public void Every_worker_option_can_come_from_its_PRETRAIN_variable()
    {
        var parsed = Parse(["worker"], ("PRETRAIN_COORDINATOR", "coordinator-0.coordinator:4053"), ("PRETRAIN_HOST", "10.1.2.3"),
            ("PRETRAIN_TIMEOUT", "7"), ("PRETRAIN_COORDINATOR_TIMEOUT", "90"), ("PRETRAIN_VERBOSE", "1"), ("PRETRAIN_WORKER_ID", "pod-a"));
        Assert.Empty(parsed.Errors);
        Assert.Equal("coordinator-0.coordinator:4053", Value<string>(parsed, "--coordinator"));
        Assert.Equal("10.1.2.3", Value<string>(parsed, "--host"));
        Assert.Equal(7, Value<int>(parsed, "--timeout"));
        Assert.Equal(90, Value<int>(parsed, "--coordinator-timeout"));
        Assert.True(Value<bool>(parsed, "--verbose"));
        Assert.Equal("pod-a", Value<string>(parsed, "--worker-id"));
    }

    [Fact]
    public void A_flag_on_the_command_line_wins_over_the_environment()
    {
        var parsed = Parse(["worker", "--coordinator", "a:1", "--timeout", "9"], ("PRETRAIN_COORDINATOR", "b:2"), ("PRETRAIN_TIMEOUT", "7"));
        Assert.Empty(parsed.Errors);
        Assert.Equal("a:1", Value<string>(parsed, "--coordinator"));
        Assert.Equal(9, Value<int>(parsed, "--timeout"));
    }

    [Fact]
    public void A_required_option_is_still_required_when_neither_flag_nor_variable_gives_it()
    {
        var parsed = Parse(["worker"], ("PRETRAIN_TIMEOUT", "7"));
        Assert.Contains(parsed.Errors, e => e.Message.Contains("--coordinator"));
    }

    [Fact]
    public void Kubeflow_variables_are_read_as_the_same_facts_and_PRETRAIN_wins_over_them()
    {
        var worker = Parse(["worker"], ("PET_MASTER_ADDR", "master"), ("PET_MASTER_PORT", "4100"), ("PET_NODE_RANK", "3"));
        Assert.Empty(worker.Errors);
        Assert.Equal("master:4100", Value<string>(worker, "--coordinator"));
        Assert.Equal("worker-3", Value<string>(worker, "--worker-id"));
        Assert.Equal("master:4053", Value<string>(Parse(["worker"], ("PET_MASTER_ADDR", "master")), "--coordinator"));   // our default port

        var coordinator = Parse(["coordinator", "--recipe", TestRecipes.TinyRecipePath], ("PET_NNODES", "1:4"));
        Assert.Equal(4, Value<int>(coordinator, "--workers"));                   // torchrun's elastic MIN:MAX: the most
        Assert.Equal(3, Value<int>(Parse(["coordinator", "--recipe", TestRecipes.TinyRecipePath], ("PET_NNODES", "2"), ("PRETRAIN_WORKERS", "3")), "--workers"));
        Assert.Equal("b:2", Value<string>(Parse(["worker"], ("PET_MASTER_ADDR", "master"), ("PRETRAIN_COORDINATOR", "b:2")), "--coordinator"));
    }

    [Fact]
    public void Every_option_of_every_command_names_its_variable_in_the_help()
    {
        foreach (var command in Root.Subcommands)
            foreach (var option in command.Options.Where(o => o.Name.StartsWith("--", StringComparison.Ordinal) && o.Name != "--help"))
                Assert.EndsWith($"[env: {EnvironmentDefaults.VariableOf(option)}]", option.Description);
        Assert.Equal("PRETRAIN_COORDINATOR_TIMEOUT", EnvironmentDefaults.VariableOf(new Option<int>("--coordinator-timeout")));
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task A_value_that_is_not_a_number_exits_2_naming_the_option_and_where_it_came_from(bool fromEnvironment)
    {
        // Not a number at all: the range validator used to read it anyway and crash with a stack trace (exit 134).
        using var cli = fromEnvironment
            ? CliProcess.Start(new Dictionary<string, string> { ["PRETRAIN_COORDINATOR"] = "a:1", ["PRETRAIN_TIMEOUT"] = "soon" }, "worker")
            : CliProcess.Start("worker", "--coordinator", "a:1", "--timeout", "soon");
        Assert.True(await cli.WaitAsync(TimeSpan.FromSeconds(60)) == 2, cli.Output);
        Assert.Contains("Cannot parse argument 'soon' for option '--timeout'", cli.Output);
        Assert.DoesNotContain("   at ", cli.Output);
        Assert.Equal(fromEnvironment, cli.Output.Contains("--timeout came from the environment (PRETRAIN_TIMEOUT)"));
    }

    [Fact]
    public void In_a_pod_the_coordinator_is_reached_by_its_name_under_its_headless_service()
    {
        var hosts = Path.GetTempFileName();
        try
        {
            File.WriteAllText(hosts, "127.0.0.1 localhost\n# Kubernetes-managed hosts file.\n10.1.2.3\tcoordinator-0.coordinator.pretrain.svc.cluster.local\tcoordinator-0\n");
            var pod = new Dictionary<string, string?> { ["KUBERNETES_SERVICE_HOST"] = "10.96.0.1", ["HOSTNAME"] = "coordinator-0" };
            Assert.Equal("coordinator-0.coordinator", PodAddress.DnsName(pod, hosts));
            Assert.Equal("lonely", PodAddress.DnsName(new Dictionary<string, string?>(pod) { ["HOSTNAME"] = "lonely" }, hosts));  // no subdomain
            Assert.Null(PodAddress.DnsName(new Dictionary<string, string?> { ["HOSTNAME"] = "coordinator-0" }, hosts));         // not in a pod
        }
        finally
        {
            File.Delete(hosts);
        }
    }
}
