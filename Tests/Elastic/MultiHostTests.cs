using System.Diagnostics;
using Pretrain.Shared.Messages;
using Pretrain.Tests.Infrastructure;
using Xunit;
using Xunit.Abstractions;

namespace Pretrain.Tests.Elastic;

/// <summary>
/// Faults a real cluster has, on separate "hosts" (network namespaces): a host cut off and back, and a
/// long chaos schedule of kills, freezes, partitions and coordinator restarts.
/// </summary>
public sealed class MultiHostTests(ITestOutputHelper output) : IDisposable
{
    static readonly TimeSpan Bound = TimeSpan.FromMinutes(4);
    readonly string _root = Directory.CreateTempSubdirectory("pretrain-hosts-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(_root, recursive: true); } catch (IOException) { }
    }

    [NetnsFact]
    public async Task A_partitioned_worker_is_excluded_like_a_dead_one_and_rejoins_as_a_newcomer_when_the_link_returns()
    {
        const long steps = 900;
        using var run = MultiHostRun.Start(Path.Combine(_root, "partition"), ChaosRun.TinyRecipe(_root, steps, checkpointEvery: 100), 3);
        await run.WaitUntilTrainingAsync(3, 0, TimeSpan.FromMinutes(1), () => "start");

        run.Cluster.Partition("w2");
        var cut = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        await run.WaitUntilTrainingAsync(2, cut, TimeSpan.FromSeconds(40), () => "w2 cut off");
        run.Cluster.Heal("w2");
        var healed = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        await run.WaitUntilTrainingAsync(3, healed, TimeSpan.FromSeconds(60), () => "w2 back");

        Assert.True(await run.Coordinator.WaitAsync(Bound) == 0, run.Output);
        var s = run.Summary;
        Assert.Equal("completed", s.Status);
        Assert.Equal(steps, s.Steps);
        Assert.Equal(ChaosRun.TinyDigest(steps), s.SampleDigest);
        Assert.Equal(3, s.WorldSize);
        Assert.Single(s.ReplicaChecksums.Values.Distinct());           // w2 took the others' state, not its stale own
        Assert.Equal(["start", "lost", "joined"], s.Generations.Select(g => g.Cause));
        var journal = run.Journal();
        Assert.Equal("w2", Assert.Single(journal.OfType<WorkerLost>()).WorkerId);
        // The same process came back as a newcomer: a second WorkerJoined with the same incarnation.
        var joins = journal.OfType<WorkerJoined>().Where(w => w.WorkerId == "w2").ToList();
        Assert.Equal(2, joins.Count);
        Assert.Equal(joins[0].Incarnation, joins[1].Incarnation);
        Assert.Equal(0, await run.Worker("w2").WaitAsync(Bound));
    }

    /// <summary>
    /// The ring's transport follows the hosts (issue 15): w1 and w2 share a host, w0 has one of its own. In a ring of three
    /// every pair is adjacent, so whatever the rank order, the one link between w1 and w2 goes through shared memory and
    /// the four links to and from w0 stay TCP, "another host" — a network namespace counts as a host.
    /// </summary>
    [NetnsFact]
    public async Task Workers_of_one_host_share_memory_and_workers_of_different_hosts_use_tcp()
    {
        using var run = MultiHostRun.Start(Path.Combine(_root, "transports"), ChaosRun.TinyRecipe(_root, 20), 3, hostOf: i => i == 2 ? "w1" : $"w{i}");

        Assert.True(await run.Coordinator.WaitAsync(Bound) == 0, run.Output);
        Assert.Equal("completed", run.Summary.Status);
        foreach (var id in run.WorkerIds) Assert.True(await run.Worker(id).WaitAsync(Bound) == 0, run.Output);
        string Connected(string id) => string.Join("\n", run.Worker(id).Output.Split('\n').Where(l => l.Contains("ring connected, from rank", StringComparison.Ordinal)));
        var alone = Connected("w0").Split('\n');
        Assert.True(alone[0].Length > 0, run.Output);
        Assert.All(alone, line => Assert.Equal(2, line.Split("over TCP (another host)").Length - 1));   // both its links, every generation
        foreach (var id in new[] { "w1", "w2" })
        {
            var lines = Connected(id);
            Assert.True(lines.Contains("over shared memory (4 MiB ring)", StringComparison.Ordinal) && lines.Contains("over TCP (another host)", StringComparison.Ordinal), $"{id}: {lines}");
        }
    }

    enum Fault { KillWorker, KillRankZero, KillCoordinator, Freeze, Partition }

    /// <summary>
    /// At least 20 faults from a seed (printed; set PRETRAIN_CHAOS_SEED to replay one), one at a time,
    /// each repaired (a killed process started again, a frozen one woken, a link brought back) and the
    /// job whole and training again before the next.
    /// </summary>
    [NetnsFact]
    [Trait("Category", "Long")]
    public async Task A_job_survives_a_seeded_schedule_of_twenty_kills_freezes_partitions_and_coordinator_restarts()
    {
        int seed = int.TryParse(Environment.GetEnvironmentVariable("PRETRAIN_CHAOS_SEED"), out var given) ? given : Random.Shared.Next(1, 1_000_000);
        output.WriteLine($"chaos seed {seed}; replay with PRETRAIN_CHAOS_SEED={seed} ./test.sh --long --filter \"FullyQualifiedName~seeded_schedule\"");
        Console.Error.WriteLine($"[chaos] seed {seed}");
        var random = new Random(seed);
        // Four of each kind in a seeded order: every kind happens, rank 0 is killed more than once.
        var schedule = Enum.GetValues<Fault>().SelectMany(f => Enumerable.Repeat(f, 4)).OrderBy(_ => random.Next()).ToList();

        const long steps = 12_000;
        using var run = MultiHostRun.Start(Path.Combine(_root, "chaos"), ChaosRun.TinyRecipe(_root, steps, checkpointEvery: 500), 3);
        await run.WaitUntilTrainingAsync(3, 0, TimeSpan.FromMinutes(1), () => $"start, seed {seed}");
        var clock = Stopwatch.StartNew();
        int coordinatorKills = 0, workerKills = 0, workerFaults = 0;
        for (int i = 0; i < schedule.Count; i++)
        {
            var fault = schedule[i];
            string target = fault switch
            {
                Fault.KillCoordinator => MultiHostRun.CoordinatorHost,
                Fault.KillRankZero => run.RankZero(),
                _ => run.WorkerIds[random.Next(run.WorkerIds.Count)],
            };
            var pause = TimeSpan.FromMilliseconds(random.Next(1_000, 4_000));
            string what = $"fault {i + 1}/{schedule.Count}: {fault} {target}, {pause.TotalSeconds:0.0} s, seed {seed}";
            output.WriteLine($"{clock.Elapsed.TotalSeconds,6:0.0} s  {what}");
            switch (fault)
            {
                case Fault.KillCoordinator:
                    run.Cluster.Kill(target);
                    await Task.Delay(pause);
                    run.StartCoordinator();
                    coordinatorKills++;
                    break;
                case Fault.KillWorker or Fault.KillRankZero:
                    run.Cluster.Kill(target);
                    await Task.Delay(pause);
                    run.StartWorker(target);
                    workerFaults++;
                    workerKills++;
                    break;
                case Fault.Freeze:
                    // Longer than the failure detector allows (~5 s): it is excluded, and woken it rejoins itself.
                    run.Cluster.Stop(target);
                    await Task.Delay(pause + TimeSpan.FromSeconds(6));
                    run.Cluster.Continue(target);
                    workerFaults++;
                    break;
                case Fault.Partition:
                    run.Cluster.Partition(target);
                    await Task.Delay(pause + TimeSpan.FromSeconds(6));
                    run.Cluster.Heal(target);
                    workerFaults++;
                    break;
            }
            var repaired = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
            await run.WaitUntilTrainingAsync(3, repaired, TimeSpan.FromSeconds(90), () => what);
        }
        output.WriteLine($"{clock.Elapsed.TotalSeconds,6:0.0} s  {schedule.Count} faults done; waiting for the job to finish");

        Assert.True(await run.Coordinator.WaitAsync(TimeSpan.FromMinutes(10)) == 0, $"seed {seed}:\n{run.Output}");
        var s = run.Summary;
        Assert.Equal("completed", s.Status);
        Assert.Equal(steps, s.Steps);
        Assert.Equal(ChaosRun.TinyDigest(steps), s.SampleDigest);
        Assert.Single(s.ReplicaChecksums.Values.Distinct());
        // The journal tells the story: every restart, a loss for each killed worker (a frozen or cut-off one that
        // reports its step in time after it wakes regroups without being lost), and a new generation for each worker fault.
        var journal = run.Journal();
        Assert.Equal(coordinatorKills, journal.OfType<CoordinatorRestarted>().Count());
        Assert.True(journal.OfType<WorkerLost>().Count() >= workerKills, $"seed {seed}: {journal.OfType<WorkerLost>().Count()} losses for {workerKills} killed workers");
        Assert.True(journal.OfType<GenerationStarted>().Count() >= 1 + workerFaults, $"seed {seed}: too few generations");
        output.WriteLine($"{clock.Elapsed.TotalSeconds,6:0.0} s  completed: {journal.OfType<GenerationStarted>().Count()} generations, " +
                         $"{journal.OfType<WorkerLost>().Count()} losses, {coordinatorKills} coordinator restarts");
    }
}
