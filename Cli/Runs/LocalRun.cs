namespace Pretrain.Cli.Runs;

/// <summary>
/// The embedded default: the coordinator in this process, the workers as child processes on loopback,
/// the SQLite journal in the run directory. Like torchrun it owns its workers: they exit with it.
/// </summary>
public static class LocalRun
{
    public static async Task<int> RunAsync(RunOptions options, CancellationToken ct)
    {
        var prepared = await LocalData.EnsureAsync(options.RecipePath, options.Verbose, ct);
        if (prepared != 0) return prepared;
        return await CoordinatorRun.RunAsync(options with { Host = "127.0.0.1", Port = 0 },
            (port, runDirectory, credentials, console) => WorkerProcesses.Start(options, port, runDirectory, credentials, console), ct);
    }
}
