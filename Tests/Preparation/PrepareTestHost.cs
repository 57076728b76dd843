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
/// Run as <c>dotnet exec Pretrain.Tests.dll prepare test-pattern …</c>. The product's own kinds run
/// their real plans, slowed by <see cref="PatternPlan.DelayVariable"/> per task when it is set, so a
/// test can kill them half way however fast the machine is.
/// </summary>
public static class PrepareTestHost
{
    public static readonly PlanCatalog Plans = new([PatternPlan.Kind],
        spec => spec.Kind == PatternPlan.Kind ? PatternPlan.FromEnvironment(spec) : Slowed(PreparationPlans.Create(spec)));

    public static int Main(string[] args) => Program.Run(args, Plans);

    private static IPreparationPlan Slowed(IPreparationPlan plan) =>
        int.TryParse(Environment.GetEnvironmentVariable(PatternPlan.DelayVariable), out var ms) && ms > 0 ? new SlowPlan(plan, TimeSpan.FromMilliseconds(ms)) : plan;

    /// <summary>A real plan whose tasks each wait first: the shards are the plan's own.</summary>
    private sealed class SlowPlan(IPreparationPlan inner, TimeSpan delay) : IPreparationPlan
    {
        public string OutputDirectory => inner.OutputDirectory;
        public IReadOnlyList<PreparationTask> Tasks => inner.Tasks;
        public bool IsDone(PreparationTask task) => inner.IsDone(task);
        public void Finish() => inner.Finish();

        public void Run(PreparationTask task, IProgress<long>? bytesDone, CancellationToken ct)
        {
            Task.Delay(delay, ct).Wait(ct);
            inner.Run(task, bytesDone, ct);
        }
    }
}
