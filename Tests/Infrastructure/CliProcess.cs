using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Text;

namespace Pretrain.Tests.Infrastructure;

/// <summary>
/// Runs the real pretrain executable as a child process, capturing its output. Every wait is bounded:
/// a process that outlives its timeout is killed (with its children) and the test fails naming it.
/// </summary>
public sealed class CliProcess : IDisposable
{
    readonly Process _process;
    readonly StringBuilder _output = new();
    readonly Lock _gate = new();
    bool _disposed;

    CliProcess(Process process) => _process = process;

    public static CliProcess Start(params string[] args) => Start(new ProcessStartInfo(RepoPaths.Cli), args);

    /// <summary>The CLI with extra environment variables (test hooks such as a slowed checkpoint writer); children inherit them.</summary>
    public static CliProcess Start(IReadOnlyDictionary<string, string> environment, params string[] args)
    {
        var info = new ProcessStartInfo(RepoPaths.Cli);
        foreach (var (name, value) in environment) info.Environment[name] = value;
        return Start(info, args);
    }

    /// <summary>
    /// Runs the test assembly as the CLI (<c>dotnet exec Pretrain.Tests.dll …</c>, see
    /// Preparation/PrepareTestHost): the real commands plus test-only preparation kinds.
    /// </summary>
    public static CliProcess StartTestHost(IReadOnlyDictionary<string, string> environment, params string[] args)
    {
        var info = new ProcessStartInfo("dotnet");
        info.ArgumentList.Add("exec");
        info.ArgumentList.Add(typeof(CliProcess).Assembly.Location);
        foreach (var (name, value) in environment) info.Environment[name] = value;
        return Start(info, args);
    }

    /// <summary>
    /// The CLI "on another host": inside network namespace <paramref name="netns"/> (see <see cref="NetnsCluster"/>),
    /// through <c>ip netns exec NS pretrain args…</c>. ip execs the command in place, so <see cref="Id"/> is the CLI's own pid.
    /// </summary>
    public static CliProcess StartIn(string netns, IReadOnlyDictionary<string, string> environment, params string[] args) =>
        StartCommandIn(netns, RepoPaths.Cli, environment, args);

    /// <summary>Any program inside network namespace <paramref name="netns"/> (the harness's own tests run bash and perl).</summary>
    public static CliProcess StartCommandIn(string netns, string fileName, IReadOnlyDictionary<string, string> environment, params string[] args)
    {
        var info = new ProcessStartInfo(NetnsCluster.IpTool);
        foreach (string a in new[] { "netns", "exec", netns, fileName }) info.ArgumentList.Add(a);
        foreach (var (name, value) in environment) info.Environment[name] = value;
        return Start(info, args);
    }

    static CliProcess Start(ProcessStartInfo info, string[] args)
    {
        info.RedirectStandardOutput = true;
        info.RedirectStandardError = true;
        info.WorkingDirectory = RepoPaths.Root;
        foreach (string a in args) info.ArgumentList.Add(a);
        var cli = new CliProcess(new Process { StartInfo = info, EnableRaisingEvents = true });
        cli._process.OutputDataReceived += (_, e) => cli.Append(e.Data);
        cli._process.ErrorDataReceived += (_, e) => cli.Append(e.Data);
        cli._process.Start();
        cli._process.BeginOutputReadLine();
        cli._process.BeginErrorReadLine();
        return cli;
    }

    /// <summary>Runs to completion and returns (exit code, output).</summary>
    public static async Task<(int ExitCode, string Output)> RunAsync(TimeSpan timeout, params string[] args)
    {
        using var cli = Start(args);
        int code = await cli.WaitAsync(timeout);
        return (code, cli.Output);
    }

    public int Id => _process.Id;

    public string Output { get { lock (_gate) return _output.ToString(); } }

    public bool HasExited => _process.HasExited;

    /// <summary>SIGKILL, like a lost node or `kill -9`: the process gets no chance to clean up.</summary>
    public void Kill()
    {
        _process.Kill();
        _process.WaitForExit();
    }

    /// <summary>
    /// SIGKILLs the process and its descendants unless it has exited, then waits for it at most
    /// <paramref name="timeout"/>; false if it is still there. Safe on an exited or disposed process.
    /// </summary>
    internal bool KillTree(TimeSpan timeout)
    {
        lock (_gate) if (_disposed) return true;
        try
        {
            if (!_process.HasExited) _process.Kill(entireProcessTree: true);
            return _process.WaitForExit(timeout);
        }
        catch (InvalidOperationException) { return true; }   // exited (or was never started) meanwhile
    }

    public async Task<int> WaitAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await _process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            _process.Kill(entireProcessTree: true);
            throw new TimeoutException($"pretrain {string.Join(' ', _process.StartInfo.ArgumentList)} did not exit within {timeout}. Output:\n{Output}");
        }
        _process.WaitForExit();   // flushes the asynchronous output readers
        return _process.ExitCode;
    }

    /// <summary>
    /// Waits until the output so far satisfies <paramref name="match"/>, or fails after the timeout; the failure quotes
    /// <paramref name="match"/>'s source (<paramref name="what"/>) so it says what was awaited.
    /// </summary>
    public async Task WaitForOutputAsync(Func<string, bool> match, TimeSpan timeout, [CallerArgumentExpression(nameof(match))] string what = "")
    {
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline)
        {
            if (match(Output)) return;
            if (_process.HasExited) throw new InvalidOperationException($"pretrain exited with code {_process.ExitCode} before output matching `{what}`. Output:\n{Output}");
            await Task.Delay(100);
        }
        throw new TimeoutException($"no output matching `{what}` within {timeout}. Output:\n{Output}");
    }

    void Append(string? line)
    {
        if (line == null) return;
        lock (_gate) _output.AppendLine(line);
    }

    /// <summary>Kills what is left of the process tree. Idempotent: a test and a <see cref="NetnsCluster"/> may both dispose it.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
        }
        if (!_process.HasExited) _process.Kill(entireProcessTree: true);
        _process.Dispose();
    }
}
