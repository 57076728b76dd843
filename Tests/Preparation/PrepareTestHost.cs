using Pretrain.Cli;
using Pretrain.Cli.Commands;
using Pretrain.Data.Preparation;

namespace Pretrain.Tests.Preparation;

/// <summary>
/// The test assembly as a program: the real CLI (<see cref="Program.Run"/>) plus the hidden kind
/// <c>prepare test-pattern</c>, so the kill-and-resume acceptance test drives the product's whole
/// preparation path in a separate process it can SIGKILL while the real plans are still being built.
/// The kind exists only here: the shipped `pretrain` executable has no such command. Workers it
/// starts are this host again (WorkerProcesses starts the entry assembly).
/// Run as <c>dotnet exec Pretrain.Tests.dll prepare test-pattern …</c>.
/// </summary>
public static class PrepareTestHost
{
    public static readonly PlanCatalog Plans = new([PatternPlan.Kind],
        spec => spec.Kind == PatternPlan.Kind ? PatternPlan.FromEnvironment(spec) : PreparationPlans.Create(spec));

    public static int Main(string[] args) => Program.Run(args, Plans);
}
