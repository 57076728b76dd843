using System.Collections.Immutable;
using System.Reflection;
using System.Text.Json;
using Akka.Actor;
using Akka.Configuration;
using Pretrain.Coordinator.State;
using Pretrain.Shared.Messages;
using Pretrain.Shared.Serialization;
using Xunit;
using static Pretrain.Tests.Coordinator.JobStateTests;

namespace Pretrain.Tests.Coordinator;

/// <summary>
/// The job state's journal snapshot: folded from realistic journals, written to bytes by the serializer the
/// snapshot store uses, read back and turned into a state again, it must be the state it was, field by field,
/// and fold the next events the same way.
/// </summary>
public sealed class JobSnapshotTests : IDisposable
{
    private const long T0 = 1_764_000_000_000;

    // Four workers, at least three to go on, room for a fifth.
    private static readonly JobSpec Job = Spec(4) with { MinWorkers = 3, MaxWorkers = 5, RecipePath = "/r/gpt.yaml" };

    private readonly ActorSystem _system =
        ActorSystem.Create("snapshots", ConfigurationFactory.ParseString(PretrainSerializer.Hocon()));

    public void Dispose() => _system.Terminate().Wait(TimeSpan.FromSeconds(10));

    // --- The journals ---

    private static WorkerJoined Joined(int worker) =>
        new($"w{worker}", $"10.0.0.{worker + 1}", 29500 + worker, 9100 + worker, 4200 + worker, $"incarnation-{worker}");

    private static RankAssignment Rank(int rank, int worker) => new(rank, $"w{worker}", $"10.0.0.{worker + 1}", 29500 + worker);

    private static double Loss(long step) => 4.0 / Math.Sqrt(step);

    /// <summary>Rank 0's commits from <paramref name="first"/> to <paramref name="last"/>, one every 250 ms from <paramref name="atUnixMs"/>.</summary>
    private static IEnumerable<StepCommitted> Steps(long generation, long first, long last, long atUnixMs)
    {
        for (var step = first; step <= last; step++)
            yield return new StepCommitted(generation, step, Loss(step), 1000 + step, atUnixMs + (step - first) * 250);
    }

    private static CheckpointRecorded Checkpoint(long step) => new("w0", step, $"checkpoints/step-{step:D8}", $"xxh64:{step:x8}");

    private static IJobEvent[] Rendezvous() => [new JobDefined(Job), Joined(0), Joined(1)];

    private static IJobEvent[] Running() =>
    [
        .. Rendezvous(), Joined(2), Joined(3),
        new GenerationStarted(1, [Rank(0, 0), Rank(1, 1), Rank(2, 2), Rank(3, 3)]),
        .. Steps(1, 1, 10, T0), Checkpoint(10),
        .. Steps(1, 11, 20, T0 + 2_500), Checkpoint(20),
        .. Steps(1, 21, 30, T0 + 5_000), Checkpoint(30),
    ];

    /// <summary>
    /// Generation 1 lost w1 and regrouped into generation 2; then a newcomer (w4) waits, the coordinator restarted
    /// during the regroup for it, w3 did not register again (a recovery again), and w0 blames w2 on a timeout.
    /// </summary>
    private static IJobEvent[] Regrouping() =>
    [
        .. Running(),
        new RegroupStarted(1, RegroupCauses.Lost, "w1 lost at step 31 (connection reset)", T0 + 7_600),
        new StepHeld("w0", 1, 31),
        new WorkerLost("w1", 1, "connection reset", "w0"),
        new StepHeld("w2", 1, 31),
        new StepHeld("w3", 1, 30),
        new GenerationStarted(2, [Rank(0, 0), Rank(1, 2), Rank(2, 3)], 31, 0, RegroupCauses.Lost),
        .. Steps(2, 32, 40, T0 + 9_000), Checkpoint(40),
        Joined(4),
        new RegroupStarted(2, RegroupCauses.Joined, "w4 joining at step 41", T0 + 11_400),
        new StepHeld("w0", 2, 41),
        new CoordinatorRestarted(2, 40, T0 + 15_000),
        new RegroupStarted(2, RegroupCauses.Lost,
            "w3 lost (it did not register again within 30 s of the coordinator's restart, detected by coordinator; rank 0 last reported step 40)", T0 + 45_000),
        new WorkerLost("w3", 2, "it did not register again within 30 s of the coordinator's restart", "coordinator"),
        new WorkerSuspected("w2", 2, "no data from w2 for 5.1 s", "w0", T0 + 45_200),
    ];

    /// <summary>w2 reports within the grace: generation 3 of w0, w2 and the newcomer w4 trains on.</summary>
    private static IJobEvent[] NextGeneration() =>
    [
        .. Regrouping(),
        new StepHeld("w2", 2, 41),
        new GenerationStarted(3, [Rank(0, 0), Rank(1, 2), Rank(2, 4)], 41, 0, RegroupCauses.Lost),
        .. Steps(3, 42, 50, T0 + 46_000), Checkpoint(50),
        .. Steps(3, 51, 60, T0 + 48_250), Checkpoint(60),
    ];

    /// <summary>Every rank of generation 3 reports its final figures; w4 exits after its report.</summary>
    private static IJobEvent[] Completed() =>
    [
        .. NextGeneration(),
        .. Steps(3, 61, 100, T0 + 50_750), Checkpoint(100),
        new WorkerFinished(new ReportFinished("w4", 2, 100, Loss(100), 1100, "xxh64:0004",
            new Dictionary<string, double> { ["knn_top1"] = 0.62, ["linear_top1"] = 0.7 }, Mfu: 0.12, FirstLoss: Loss(42), SampleDigest: "xxh64:5a4e")),
        new WorkerLeft("w4", 3, 100),
        // A rank that ran no step of its own reports first_loss NaN, and no evaluation.
        new WorkerFinished(new ReportFinished("w2", 1, 100, Loss(100), 1100, "xxh64:0004", new Dictionary<string, double>())),
        new WorkerFinished(new ReportFinished("w0", 0, 100, Loss(100), 1100, "xxh64:0004",
            new Dictionary<string, double> { ["knn_top1"] = 0.62 }, Mfu: 0.11, FirstLoss: Loss(1), SampleDigest: "xxh64:5a4e")),
        new JobCompleted(3, 100),
    ];

    /// <summary>The suspect stays silent: two workers remain of the three elastic.min_workers asks for, and none joins in time.</summary>
    private static IJobEvent[] Failed() =>
    [
        .. Regrouping(),
        new WorkerLost("w2", 2, "no data from w2 for 5.1 s; it did not report its step within 2 s of being blamed", "w0"),
        new JobFailed(2, "only 2 worker(s) remain, fewer than elastic.min_workers = 3, and none joined within elastic.wait = 120 s " +
                         "(w3 lost); the last checkpoint is checkpoints/step-00000040 (step 40); continue with --resume"),
    ];

    private static IJobEvent[] Journal(string name) => name switch
    {
        "empty" => [],
        "rendezvous" => Rendezvous(),
        "running" => Running(),
        "regrouping" => Regrouping(),
        "next generation" => NextGeneration(),
        "completed" => Completed(),
        "failed" => Failed(),
        _ => throw new ArgumentException($"no journal {name}", nameof(name)),
    };

    private static readonly string[] JournalNames = ["empty", "rendezvous", "running", "regrouping", "next generation", "completed", "failed"];

    public static TheoryData<string> Journals => new(JournalNames);

    private static JobState Fold(string name) => JobState.Empty.ApplyAll(Journal(name));

    /// <summary>Events that may come next in a journal, of every kind that changes the state.</summary>
    private static IJobEvent[] NextEvents() =>
    [
        Joined(5),
        new StepHeld("w2", 2, 41),
        new StepCommitted(3, 101, Loss(101), 1101, T0 + 90_000),
        new WorkerSuspected("w0", 3, "no data from w0 for 6 s", "w2", T0 + 90_100),
        new WorkerLost("w0", 3, "its actor stopped", "coordinator"),
        new WorkerLeft("w2", 3, 60),
        new RegroupStarted(3, RegroupCauses.Left, "w2 leaving at step 60 (SIGTERM)", T0 + 90_200),
        new CoordinatorRestarted(3, 60, T0 + 90_300),
        Checkpoint(70),
        new WorkerFinished(new ReportFinished("w0", 0, 100, 0.4, 1000, "xxh64:0004", new Dictionary<string, double>())),
        new JobCompleted(3, 100),
        new JobFailed(3, "w2 (rank 1) failed: NaN loss"),
    ];

    // --- Round trips ---

    /// <summary>To a snapshot, to bytes and back as the snapshot store does (the binding to IPretrainMessage), to a state.</summary>
    private JobState RoundTrip(JobState state)
    {
        var snapshot = JobSnapshots.ToSnapshot(state);
        var serializer = Assert.IsType<PretrainSerializer>(_system.Serialization.FindSerializerFor(snapshot));
        var manifest = Akka.Serialization.Serialization.ManifestFor(serializer, snapshot);
        Assert.Equal("s.job", manifest);
        var bytes = serializer.ToBinary(snapshot);
        var back = Assert.IsType<JobSnapshot>(_system.Serialization.Deserialize(bytes, PretrainSerializer.SerializerId, manifest));
        return JobSnapshots.ToState(back);
    }

    [Theory]
    [MemberData(nameof(Journals))]
    public void A_state_comes_back_from_its_snapshot_bytes_field_by_field(string journal)
    {
        var state = Fold(journal);
        AssertSameState(state, RoundTrip(state));
    }

    [Theory]
    [MemberData(nameof(Journals))]
    public void A_state_from_a_snapshot_folds_the_next_event_as_the_original_does(string journal)
    {
        var state = Fold(journal);
        var restored = RoundTrip(state);
        foreach (var next in NextEvents())
            AssertSameState(state.Apply(next), restored.Apply(next), $"after {next.GetType().Name}");
    }

    [Theory]
    [InlineData("completed")]
    [InlineData("failed")]
    public void A_snapshot_at_any_point_of_the_journal_then_the_events_after_it_give_the_state_of_the_whole_journal(string journal)
    {
        var events = Journal(journal);
        var whole = JobState.Empty.ApplyAll(events);
        for (var taken = 0; taken <= events.Length; taken++)
        {
            var restored = RoundTrip(JobState.Empty.ApplyAll(events.Take(taken)));
            AssertSameState(whole, restored.ApplyAll(events.Skip(taken)), $"with a snapshot after {taken} of {events.Length} events");
        }
    }

    [Fact]
    public void The_journals_set_every_field_of_the_job_state()
    {
        // Otherwise a field the snapshot forgot could round-trip as its default unnoticed.
        var empty = Fields(JobState.Empty);
        var states = JournalNames.Select(name => Fields(Fold(name))).ToList();
        var neverSet = empty.Keys.Where(name => states.All(fields => fields[name] == empty[name])).ToList();
        Assert.Empty(neverSet);
    }

    [Fact]
    public void The_regrouping_journal_is_a_regroup_with_a_held_step_a_suspect_a_gone_rank_and_a_newcomer()
    {
        var state = Fold("regrouping");
        Assert.Equal((JobPhase.Regrouping, 2L, RegroupCauses.Lost), (state.Phase, state.Generation, state.RegroupCause));
        var held = Assert.Single(state.Held);
        Assert.Equal(("w0", 41L), (held.Key, held.Value));
        Assert.Equal("w2", Assert.Single(state.Suspects).Key);
        Assert.Equal("w3", Assert.Single(state.Gone));
        Assert.Equal(["w4"], state.Newcomers.Select(w => w.WorkerId));
        Assert.Equal(["w1", "w3"], state.Lost.Select(l => l.WorkerId));
        // Recovering from w3's loss (the regroup for w4 became a recovery); the regroup's clock restarted with the coordinator.
        Assert.Equal(T0 + 45_000, state.RecoveringSinceUnixMs);
        Assert.Equal(T0 + 15_000, state.RegroupAtUnixMs);
        Assert.Equal(1, state.CoordinatorRestarts);
        // Generation 2's first step came 1.4 s after w1's loss was detected.
        Assert.Equal(1.4, Assert.Single(state.Recoveries));
    }

    [Fact]
    public void A_snapshot_of_an_unknown_version_is_refused_naming_the_version()
    {
        var snapshot = JobSnapshots.ToSnapshot(Fold("running")) with { Version = JobSnapshot.CurrentVersion + 1 };

        var error = Assert.Throws<InvalidDataException>(() => JobSnapshots.ToState(snapshot));

        Assert.Contains($"version {JobSnapshot.CurrentVersion + 1}", error.Message);
        Assert.Contains($"reads version {JobSnapshot.CurrentVersion}", error.Message);
    }

    [Fact]
    public void A_snapshot_naming_an_unknown_phase_is_refused()
    {
        var snapshot = JobSnapshots.ToSnapshot(Fold("running")) with { Phase = "Paused" };
        Assert.Contains("'Paused'", Assert.Throws<InvalidDataException>(() => JobSnapshots.ToState(snapshot)).Message);
    }

    // --- Comparing states ---

    // A ReportFinished of a rank that ran no step holds first_loss NaN.
    private static readonly JsonSerializerOptions Literals =
        new() { NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals };

    // Every field of the state: the properties with an init accessor (computed ones such as IsOver follow from them).
    private static readonly PropertyInfo[] StateFields =
        [.. typeof(JobState).GetProperties(BindingFlags.Public | BindingFlags.Instance).Where(p => p.SetMethod is { IsPublic: true })];

    /// <summary>
    /// Each field of the state as JSON. Records holding immutable collections compare by reference, so their
    /// renderings are compared; the unordered ones (hash sets and maps) are sorted first.
    /// </summary>
    private static Dictionary<string, string> Fields(JobState state) =>
        StateFields.ToDictionary(p => p.Name, p => JsonSerializer.Serialize(Canonical(p.GetValue(state)), Literals));

    private static object? Canonical(object? value) => value switch
    {
        ImmutableHashSet<string> set => set.Order(StringComparer.Ordinal).ToArray(),
        ImmutableDictionary<string, long> map => map.OrderBy(kv => kv.Key, StringComparer.Ordinal).ToArray(),
        ImmutableDictionary<string, WorkerSuspected> map => map.OrderBy(kv => kv.Key, StringComparer.Ordinal).ToArray(),
        _ => value,
    };

    private static void AssertSameState(JobState expected, JobState actual, string context = "")
    {
        var want = Fields(expected);
        var got = Fields(actual);
        var differences = want.Where(field => field.Value != got[field.Key])
            .Select(field => $"JobState.{field.Key} differs {context}: expected {field.Value}, actual {got[field.Key]}").ToList();
        Assert.Empty(differences);
    }
}
