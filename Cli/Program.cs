using System.CommandLine;
using Pretrain.Cli.Commands;

namespace Pretrain.Cli;

/// <summary>
/// The pretrain command line: one executable for every role, so `./pretrain local` can start its
/// workers as `pretrain worker` processes and a Kubernetes pod runs the same binary as its own role.
/// </summary>
public static class Program
{
    public static int Main(string[] args) => Run(args, PlanCatalog.Product);

    /// <summary>The CLI with the given preparation kinds: a host embedding it (the tests) may add its own.</summary>
    public static int Run(string[] args, PlanCatalog plans)
    {
        var root = new RootCommand("pretrain — distributed self-supervised pretraining for .NET (coordinator + data-parallel TorchSharp workers).")
        {
            DemoCommand.Create(),
            LocalCommand.Create(),
            CoordinatorCommand.Create(),
            WorkerCommand.Create(plans.Create),
            PrepareCommand.Create(plans),
            StatusCommand.Create(),
        };
        return root.Parse(args).Invoke();
    }
}
