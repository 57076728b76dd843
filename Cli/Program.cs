using System.CommandLine;
using Pretrain.Cli.Commands;

namespace Pretrain.Cli;

/// <summary>
/// The pretrain command line: one executable for every role, so `./pretrain local` can start its
/// workers as `pretrain worker` processes and a Kubernetes pod runs the same binary as its own role.
/// </summary>
public static class Program
{
    public static int Main(string[] args)
    {
        // Before libtorch loads: every role's steps (a worker's, `eval`'s probe) reuse freed memory instead of faulting it in again.
        Pretrain.Worker.Host.NativeHeap.KeepFreedMemory();
        return Run(args, PlanCatalog.Product);
    }

    /// <summary>The CLI with the given preparation kinds: a host embedding it (the tests) may add its own.</summary>
    public static int Run(string[] args, PlanCatalog plans)
    {
        var root = Commands(plans);
        var parsed = root.Parse(EnvironmentDefaults.Apply(root, args, Environment.GetEnvironmentVariables(), out var fromEnvironment));
        if (parsed.Errors.Count > 0)
        {
            // Bad input exits 2 with what was expected (README, exit codes); System.CommandLine's own
            // handling would exit 1 and print the whole help after the error.
            foreach (var error in parsed.Errors) Console.Error.WriteLine("[pretrain] error: " + error.Message);
            foreach (var source in fromEnvironment)                          // names only: a value may be a connection string
                Console.Error.WriteLine($"[pretrain] note: {source.Option} came from the environment ({source.Variable})");
            var names = new List<string>();
            for (var r = (System.CommandLine.Parsing.SymbolResult?)parsed.CommandResult; r != null; r = r.Parent)
                if (r is System.CommandLine.Parsing.CommandResult c) names.Insert(0, c.Command.Name);
            names[0] = "pretrain";
            Console.Error.WriteLine($"[pretrain] see `{string.Join(' ', names)} --help`");
            return 2;
        }
        // SIGTERM / Ctrl+C cancel the command's token. System.CommandLine would kill the process 2 s later;
        // a worker leaving the job finishes its step and tells the coordinator first (bounded by its
        // --timeout), so allow longer: within a pod's usual 30 s terminationGracePeriodSeconds.
        return parsed.Invoke(new InvocationConfiguration { ProcessTerminationTimeout = TimeSpan.FromSeconds(30) });
    }

    /// <summary>Every command, each option's help naming the environment variable it may come from.</summary>
    public static RootCommand Commands(PlanCatalog plans)
    {
        var root = new RootCommand("pretrain — distributed self-supervised pretraining for .NET (coordinator + data-parallel TorchSharp workers).")
        {
            DemoCommand.Create(),
            LocalCommand.Create(),
            CoordinatorCommand.Create(),
            WorkerCommand.Create(plans.Create),
            PrepareCommand.Create(plans),
            StatusCommand.Create(),
            EvalCommand.Create(),
            ExportCommand.Create(),
            CertsCommand.Create(),
        };
        EnvironmentDefaults.Describe(root);
        return root;
    }
}
