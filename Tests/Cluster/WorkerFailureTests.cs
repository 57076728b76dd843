using System.Diagnostics;
using MessagePack;
using Microsoft.Data.Sqlite;
using Pretrain.Shared.Messages;
using Pretrain.Tests.Infrastructure;
using Xunit;

namespace Pretrain.Tests.Cluster;

/// <summary>A worker killed with SIGKILL mid-run: the job fails fast and clearly, and nothing hangs.</summary>
public sealed class WorkerFailureTests(Xunit.Abstractions.ITestOutputHelper output) : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("pretrain-kill-").FullName;

    [Fact]
    public async Task Survivors_report_the_killed_worker_by_name_and_stop_within_10_seconds()
    {
        string runDir = Path.Combine(_dir, "run");
        using var cli = CliProcess.Start("local", "--recipe", LongRecipe.Write(_dir), "--workers", "3", "--run-dir", runDir,
            "--timeout", "5", "--metrics-port", "-1", "--worker-metrics-port", "-1");
        await cli.WaitForOutputAsync(o => LongRecipe.LastStep(o) >= 3, TimeSpan.FromMinutes(2));
        int victim = LongRecipe.WorkerPid(cli.Output, "worker-1");
        var survivors = new[] { "worker-0", "worker-2" }.Select(w => Process.GetProcessById(LongRecipe.WorkerPid(cli.Output, w))).ToList();

        var clock = Stopwatch.StartNew();
        Process.GetProcessById(victim).Kill();                       // SIGKILL: no goodbye on any socket
        foreach (var survivor in survivors)
            Assert.True(survivor.WaitForExit(TimeSpan.FromSeconds(10)), $"survivor pid {survivor.Id} still running 10 s after the kill");
        var survivorsStopped = clock.Elapsed;
        int code = await cli.WaitAsync(TimeSpan.FromSeconds(30));
        output.WriteLine($"survivors exited {survivorsStopped.TotalSeconds:0.0} s after the kill; the run ended after {clock.Elapsed.TotalSeconds:0.0} s");

        Assert.True(survivorsStopped < TimeSpan.FromSeconds(10), $"survivors took {survivorsStopped}");
        Assert.Equal(1, code);
        Assert.Contains("the job failed", cli.Output);
        Assert.Contains("worker-1", cli.Output);
        foreach (string survivor in new[] { "worker-0", "worker-2" })
        {
            string log = File.ReadAllText(Path.Combine(runDir, "logs", survivor + ".log"));
            Assert.True(log.Contains("worker-1 at 127.0.0.1:") || log.Contains("stopped by the coordinator"), $"{survivor}'s log names neither the lost peer nor the stop:\n{log}");
        }
        var lost = JournaledLosses(Path.Combine(runDir, "journal.db"));
        Assert.Contains(lost, l => l.WorkerId == "worker-1");
        Assert.Equal("failed", Pretrain.Coordinator.Summary.RunSummary.Read(Path.Combine(runDir, "summary.json")).Status);
    }

    /// <summary>The WorkerLost events in the coordinator's SQLite journal, read back from their MessagePack payload.</summary>
    static List<WorkerLost> JournaledLosses(string journal)
    {
        using var connection = new SqliteConnection($"Data Source={journal};Mode=ReadOnly");
        connection.Open();
        using var query = connection.CreateCommand();
        query.CommandText = "SELECT message FROM journal WHERE manifest = 'e.wl'";
        using var reader = query.ExecuteReader();
        var options = MessagePackSerializerOptions.Standard.WithSecurity(MessagePackSecurity.UntrustedData);
        var losses = new List<WorkerLost>();
        while (reader.Read()) losses.Add(MessagePackSerializer.Deserialize<WorkerLost>((byte[])reader[0], options));
        return losses;
    }

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }
}
