using System.Collections.Immutable;
using Pretrain.Shared.Messages;

namespace Pretrain.Coordinator.State;

/// <summary>Where a job is in its life. Completed and Failed are final.</summary>
public enum JobPhase
{
    Undefined,   // no JobSpec yet
    Rendezvous,  // waiting for JobSpec.WorldSize workers
    Running,     // a generation started
    Completed,   // every rank of the generation finished
    Failed,      // a worker failed or was lost (recovery is not attempted yet)
}

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

    /// <summary>Workers in the pool or the current generation, in registration order.</summary>
    public ImmutableList<WorkerJoined> Workers { get; init; } = [];

    public long Generation { get; init; }

    /// <summary>Ranks of the current generation; the ring is this order (rank r sends to r+1 mod n).</summary>
    public ImmutableList<RankAssignment> Ranks { get; init; } = [];

    public long LastStep { get; init; }
    public double LastLoss { get; init; }
    public double LastSamplesPerSecond { get; init; }
    public ImmutableList<CheckpointRecorded> Checkpoints { get; init; } = [];

    /// <summary>Final reports of the current generation, by rank.</summary>
    public ImmutableSortedDictionary<int, ReportFinished> Finished { get; init; } = ImmutableSortedDictionary<int, ReportFinished>.Empty;

    public ImmutableList<WorkerLost> Lost { get; init; } = [];
    public string? FailureReason { get; init; }

    public bool IsOver => Phase is JobPhase.Completed or JobPhase.Failed;
    public long LastCheckpointStep => Checkpoints.IsEmpty ? 0 : Checkpoints[^1].Step;

    public bool IsMember(string workerId) => Workers.Exists(w => w.WorkerId == workerId);

    /// <summary>The worker's rank in the current generation, or null if it has none.</summary>
    public int? RankOf(string workerId) => Ranks.Find(r => r.WorkerId == workerId)?.Rank;

    public JobState Apply(IJobEvent e) => e switch
    {
        JobDefined d => this with { Job = d.Job, Phase = JobPhase.Rendezvous },
        WorkerJoined w => IsMember(w.WorkerId) ? this : this with { Workers = Workers.Add(w) },
        GenerationStarted g => this with
        {
            Generation = g.Generation,
            Ranks = [.. g.Ranks],
            Phase = JobPhase.Running,
            Finished = Finished.Clear(),
        },
        WorkerLost l => this with { Workers = Workers.RemoveAll(w => w.WorkerId == l.WorkerId), Lost = Lost.Add(l) },
        StepCommitted s => this with { LastStep = s.Step, LastLoss = s.Loss, LastSamplesPerSecond = s.SamplesPerSecond },
        CheckpointRecorded c => this with { Checkpoints = Checkpoints.Add(c) },
        WorkerFinished f => this with { Finished = Finished.SetItem(f.Report.Rank, f.Report) },
        JobCompleted c => this with { Phase = JobPhase.Completed, LastStep = Math.Max(LastStep, c.Step) },
        JobFailed f => this with { Phase = JobPhase.Failed, FailureReason = f.Reason },
        _ => throw new ArgumentException($"JobState does not know event {e.GetType().Name}", nameof(e)),
    };

    public JobState ApplyAll(IEnumerable<IJobEvent> events) => events.Aggregate(this, (s, e) => s.Apply(e));

    public JobStatus ToStatus() => new(
        Phase.ToString(), Generation, [.. Workers.Select(w => w.WorkerId)], LastStep, LastCheckpointStep, FailureReason);
}
