using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Reflection;
using Pretrain.Worker.Collectives;

namespace Pretrain.Bench;

/// <summary>
/// Rank processes on loopback for the benchmarks: the parent starts one child per rank (this same program with
/// the arguments it is given), tells each every rank's data-plane port, and relays rank 0's output; a child binds
/// its listener, prints its port and reads everyone's. A child that needs no ring runs alone
/// (<see cref="RunAloneAsync"/>). Every wait is bounded by the caller's timeout.
/// </summary>
public static class RankProcesses
{
    /// <summary>Parent: runs <paramref name="world"/> children and passes each line rank 0 prints to <paramref name="rankZeroLine"/>; true when all exit 0.</summary>
    public static async Task<bool> RunAsync(int world, Func<int, IEnumerable<string>> childArguments, Action<string> rankZeroLine, TimeSpan timeout)
    {
        var children = Enumerable.Range(0, world).Select(r => Start(childArguments(r))).ToArray();
        try
        {
            var ports = new int[world];
            for (var r = 0; r < world; r++)
            {
                var line = await Bounded(children[r].StandardOutput.ReadLineAsync(), timeout, $"rank {r} to print its data-plane port")
                    ?? throw new InvalidOperationException($"rank {r} exited before binding its data-plane port");
                ports[r] = int.Parse(line.Split(' ')[1], CultureInfo.InvariantCulture);
            }
            foreach (var child in children)
            {
                await child.StandardInput.WriteLineAsync(string.Join(',', ports));
                await child.StandardInput.FlushAsync();
            }
            var relay = Task.Run(async () =>
            {
                while (await children[0].StandardOutput.ReadLineAsync() is { } line) rankZeroLine(line);
            });
            for (var r = 0; r < world; r++) await Bounded(children[r].WaitForExitAsync(), timeout, $"rank {r} to exit");
            await Bounded(relay, timeout, "rank 0's output to end");
            return children.All(c => c.ExitCode == 0);
        }
        finally
        {
            foreach (var child in children)
                if (!child.HasExited) child.Kill(entireProcessTree: true);
        }
    }

    /// <summary>
    /// Parent: runs one child that joins no ring (a fresh process per measurement, so each is timed from a clean
    /// start) and passes each line it prints to <paramref name="line"/>; true when it exits 0.
    /// </summary>
    public static async Task<bool> RunAloneAsync(IEnumerable<string> arguments, Action<string> line, TimeSpan timeout)
    {
        using var child = Start(arguments);
        try
        {
            var relay = Task.Run(async () =>
            {
                while (await child.StandardOutput.ReadLineAsync() is { } text) line(text);
            });
            await Bounded(child.WaitForExitAsync(), timeout, "the child to exit");
            await Bounded(relay, timeout, "the child's output to end");
            return child.ExitCode == 0;
        }
        finally
        {
            if (!child.HasExited) child.Kill(entireProcessTree: true);
        }
    }

    static async Task Bounded(Task task, TimeSpan timeout, string what)
    {
        try { await task.WaitAsync(timeout); }
        catch (TimeoutException) { throw new TimeoutException($"waited {timeout.TotalMinutes:0.#} min for {what}"); }
    }

    static async Task<T> Bounded<T>(Task<T> task, TimeSpan timeout, string what)
    {
        await Bounded((Task)task, timeout, what);
        return await task;
    }

    /// <summary>The generation key every rank of a benchmark proves (ranks are children of one bench process; a job derives one per generation from its secret).</summary>
    public static readonly byte[] Key = System.Security.Cryptography.SHA256.HashData("pretrain bench ring"u8);

    /// <summary>Child: binds a listener, announces its port, and returns it with every rank's address.</summary>
    public static (DataPlaneListener Listener, RingPeer[] Peers) Join(string name, DataPlaneTlsOptions? tls = null)
    {
        var listener = new DataPlaneListener(IPAddress.Loopback, tls: tls);
        Console.WriteLine($"PORT {listener.Port}");
        var ports = (Console.ReadLine() ?? "").Split(',').Select(p => int.Parse(p, CultureInfo.InvariantCulture)).ToArray();
        return (listener, ports.Select((p, r) => new RingPeer(r, $"{name}-{r}", "127.0.0.1", p)).ToArray());
    }

    private static Process Start(IEnumerable<string> arguments)
    {
        // Run as "dotnet X.dll" or as the apphost, whichever started us.
        var self = Environment.ProcessPath!;
        var info = new ProcessStartInfo(self) { RedirectStandardInput = true, RedirectStandardOutput = true };
        if (Path.GetFileNameWithoutExtension(self) == "dotnet") info.ArgumentList.Add(Assembly.GetEntryAssembly()!.Location);
        foreach (var a in arguments) info.ArgumentList.Add(a);
        return Process.Start(info)!;
    }
}
