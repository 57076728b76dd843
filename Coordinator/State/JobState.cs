using System.Collections.Immutable;
using Pretrain.Shared.Messages;

namespace Pretrain.Coordinator.State;

/// <summary>Where a job is in its life. Completed and Failed are final.</summary>
public enum JobPhase
{
    Undefined,   // no JobSpec yet
    Rendezvous,  // waiting for JobSpec.WorldSize workers
    Running,     // a generation trains
    Regrouping,  // the generation ended (a member lost or leaving, a newcomer waiting): survivors report their steps
    Completed,   // every rank of the generation finished
    Failed,      // a worker failed, or too few remained for too long
}

/// <summary>One rendezvous generation as summary.json lists it.</summary>
public sealed record GenerationRecord(long Number, int WorldSize, long FirstStep, string Cause);

/// <summary>
/// The coordinator's whole view of one job, rebuilt from the journal by folding <see cref="Apply"/>
/// over its events. Immutable: every event yields a new state, so the decisions in
/// <see cref="JobDecisions"/> are pure functions testable without an ActorSystem.
/// </summary>
public sealed record JobState
{
    public static readonly JobState Empty = new();

    public JobSpec? Job { get; init; }
    public JobPhase Phase { get; init; } = JobPhase.Undefined;

    /// <summary>Live workers: the current generation's members and the newcomers waiting, in registration order.</summary>
    public ImmutableList<WorkerJoined> Workers { get; init; } = [];

    public long Generation { get; init; }

    /// <summary>Ranks of the current generation; the ring is this order (rank r sends to r+1 mod n).</summary>
    public ImmutableList<RankAssignment> Ranks { get; init; } = [];

    public ImmutableList<GenerationRecord> Generations { get; init; } = [];

    /// <summary>The current generation as it was announced (ranks, start step, source rank).</summary>
    public GenerationStarted? Current { get; init; }

    public long LastStep { get; init; }
    public double LastLoss { get; init; }
    public double LastSamplesPerSecond { get; init; }
    public ImmutableList<CheckpointRecorded> Checkpoints { get; init; } = [];

    /// <summary>Final reports of the current generation, by rank.</summary>
    public ImmutableSortedDictionary<int, ReportFinished> Finished { get; init; } = ImmutableSortedDictionary<int, ReportFinished>.Empty;

    public ImmutableList<WorkerLost> Lost { get; init; } = [];
    public ImmutableList<WorkerLeft> Left { get; init; } = [];
    public string? FailureReason { get; init; }

    // While regrouping: why, since when, and the steps the survivors hold.
    public string RegroupCause { get; init; } = "";
    public string RegroupReason { get; init; } = "";
    public long RegroupAtUnixMs { get; init; }
    public ImmutableDictionary<string, long> Held { get; init; } = ImmutableDictionary<string, long>.Empty;

    /// <summary>
    /// Worker ids whose process of the current generation is gone (lost or left). A new process may register under
    /// the same id (a restarted worker, a replacement pod): it is a newcomer, not that rank.
    /// </summary>
    public ImmutableHashSet<string> Gone { get; init; } = [];

    /// <summary>Ranks blamed on a timeout while regrouping, with when: lost if they do not report within the grace.</summary>
    public ImmutableDictionary<string, WorkerSuspected> Suspects { get; init; } = ImmutableDictionary<string, WorkerSuspected>.Empty;

    /// <summary>When the failure behind the newest regroup was detected; cleared by the first step after it.</summary>
    public long? RecoveringSinceUnixMs { get; init; }

    /// <summary>Seconds from a failure (a member lost or leaving) to the first step committed after it.</summary>
    public ImmutableList<double> Recoveries { get; init; } = [];

    /// <summary>How many times a coordinator took this job up from the journal.</summary>
    public int CoordinatorRestarts { get; init; }

    public bool IsOver => Phase is JobPhase.Completed or JobPhase.Failed;
    public long LastCheckpointStep => Checkpoints.IsEmpty ? 0 : Checkpoints[^1].Step;
    public string? LastCheckpointPath => Checkpoints.IsEmpty ? null : Checkpoints[^1].Path;

    public bool IsMember(string workerId) => Workers.Exists(w => w.WorkerId == workerId);

    public WorkerJoined? Member(string workerId) => Workers.Find(w => w.WorkerId == workerId);

    /// <summary>The worker's rank in the current generation, or null if it has none (or its process of that generation is gone).</summary>
    public int? RankOf(string workerId) => Gone.Contains(workerId) ? null : Ranks.Find(r => r.WorkerId == workerId)?.Rank;

    /// <summary>Live workers that are not ranks of the current generation: newcomers waiting to be admitted.</summary>
    public IEnumerable<WorkerJoined> Newcomers => Workers.Where(w => RankOf(w.WorkerId) is null);

    public JobState Apply(IJobEvent e) => e switch
    {
        JobDefined d => this with { Job = d.Job, Phase = JobPhase.Rendezvous },
        WorkerJoined w => IsMember(w.WorkerId) ? this : this with { Workers = Workers.Add(w) },
        GenerationStarted g => this with
        {
            Generation = g.Generation,
            Current = g,
            Ranks = [.. g.Ranks],
            Phase = JobPhase.Running,
            Finished = Finished.Clear(),
            Held = Held.Clear(),
            Suspects = Suspects.Clear(),
            Gone = Gone.Clear(),
            // The job is at the generation's first step: a step after it counts even if it was committed once before
            // (survivors one step behind the lost rank 0 redo that step).
            LastStep = g.StartStep,
            Generations = Generations.Add(new GenerationRecord(g.Generation, g.Ranks.Count, g.StartStep, g.Cause)),
        },
        RegroupStarted r when Phase == JobPhase.Regrouping && r.Generation == Generation => this with
        {
            // A failure during a regroup for a newcomer: the regroup becomes a recovery; the reports so far stand.
            RegroupCause = r.Cause,
            RegroupReason = r.Reason,
            RecoveringSinceUnixMs = r.Cause == RegroupCauses.Joined ? RecoveringSinceUnixMs : RecoveringSinceUnixMs ?? r.AtUnixMs,
        },
        RegroupStarted r => this with
        {
            Phase = JobPhase.Regrouping,
            RegroupCause = r.Cause,
            RegroupReason = r.Reason,
            RegroupAtUnixMs = r.AtUnixMs,
            Held = Held.Clear(),
            // A newcomer is not a failure; a failure during an unfinished recovery counts from the first.
            RecoveringSinceUnixMs = r.Cause == RegroupCauses.Joined ? RecoveringSinceUnixMs : RecoveringSinceUnixMs ?? r.AtUnixMs,
        },
        StepHeld h => this with { Held = Held.SetItem(h.WorkerId, h.Step), Suspects = Suspects.Remove(h.WorkerId) },
        WorkerSuspected w => Suspects.ContainsKey(w.WorkerId) ? this : this with { Suspects = Suspects.Add(w.WorkerId, w) },
        WorkerLost l => Departed(l.WorkerId) with { Lost = Lost.Add(l) },
        WorkerLeft l => Departed(l.WorkerId) with { Left = Left.Add(l) },
        StepCommitted s => Committed(s),
        // A regroup that was under way waits for its members afresh: they had no coordinator to report to.
        CoordinatorRestarted r => this with
        {
            CoordinatorRestarts = CoordinatorRestarts + 1,
            RegroupAtUnixMs = Phase == JobPhase.Regrouping ? r.AtUnixMs : RegroupAtUnixMs,
            Suspects = Suspects.Clear(),
        },
        CheckpointRecorded c => this with { Checkpoints = Checkpoints.Add(c) },
        WorkerFinished f => this with { Finished = Finished.SetItem(f.Report.Rank, f.Report) },
        JobCompleted c => this with { Phase = JobPhase.Completed, LastStep = Math.Max(LastStep, c.Step) },
        JobFailed f => this with { Phase = JobPhase.Failed, FailureReason = f.Reason },
        _ => throw new ArgumentException($"JobState does not know event {e.GetType().Name}", nameof(e)),
    };

    /// <summary>The worker's process is gone: no longer live, no step held, no rank of this generation.</summary>
    private JobState Departed(string workerId) => this with
    {
        Workers = Workers.RemoveAll(w => w.WorkerId == workerId),
        Held = Held.Remove(workerId),
        Suspects = Suspects.Remove(workerId),
        Gone = Ranks.Exists(r => r.WorkerId == workerId) ? Gone.Add(workerId) : Gone,
    };

    private JobState Committed(StepCommitted s)
    {
        var state = this with { LastStep = s.Step, LastLoss = s.Loss, LastSamplesPerSecond = s.SamplesPerSecond };
        if (RecoveringSinceUnixMs is not { } since || s.AtUnixMs <= 0 || Phase != JobPhase.Running) return state;
        return state with { RecoveringSinceUnixMs = null, Recoveries = Recoveries.Add(Math.Max(0, s.AtUnixMs - since) / 1000.0) };
    }

    public JobState ApplyAll(IEnumerable<IJobEvent> events) => events.Aggregate(this, (s, e) => s.Apply(e));

    public JobStatus ToStatus() => new(
        Phase.ToString(), Generation, [.. Workers.Select(w => w.WorkerId)], LastStep, LastCheckpointStep, FailureReason);
}

/// <summary>Why a generation ended: the <c>cause</c> of summary.json's generations and of <c>pretrain_recoveries_total</c>.</summary>
public static class RegroupCauses
{
    public const string Start = "start";
    public const string Lost = "lost";
    public const string Left = "left";
    public const string Joined = "joined";
}
