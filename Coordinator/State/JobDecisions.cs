using Pretrain.Shared.Messages;

namespace Pretrain.Coordinator.State;

/// <summary>
/// Coordinator-internal command: the actor's death watch saw a worker's actor terminate (its node was
/// downed or left), or the local launcher saw its process exit (then <paramref name="ProcessId"/> names
/// that process, so a restarted incarnation under the same worker id is not the one lost). Never crosses
/// the network, so it is not an <see cref="IPretrainMessage"/>.
/// </summary>
public sealed record LoseWorker(string WorkerId, string Reason, string DetectedBy, int? ProcessId = null);

/// <summary>
/// Coordinator-internal command, sent by the job actor's timer while regrouping: members that have not
/// reported within the timeout are lost, and a regroup short of <c>elastic.min_workers</c> for longer
/// than <c>elastic.wait</c> fails the job.
/// </summary>
public sealed record RegroupTick;

/// <summary>
/// Coordinator-internal command, sent by the job actor once a restarted coordinator has waited the
/// reconnect window: members of the recovered job that have not registered again (<paramref name="Present"/>
/// holds those that have) are lost, and the job regroups without them.
/// </summary>
public sealed record LoseAbsent(IReadOnlyCollection<string> Present, double WindowSeconds);

/// <summary>What a command leads to: events to persist, or a refusal to send back.</summary>
public sealed record Decision(IReadOnlyList<IJobEvent> Events, string? Refusal = null)
{
    public static readonly Decision None = new([]);
    public static Decision Of(params IJobEvent[] events) => new(events);
    public static Decision Of(IEnumerable<IJobEvent> events) => new([.. events]);
    public static Decision Refuse(string reason) => new([], reason);
}

/// <summary>
/// The coordinator's decisions: given the state, a command and the time, which events happen. Pure; the
/// job actor persists the events, applies them with <see cref="JobState.Apply"/> and does the messaging.
/// Regrouping (elastic training) is decided here too: who was lost, when every survivor has reported
/// the step it holds, and who forms the next generation from which step and whose state.
/// </summary>
public static class JobDecisions
{
    /// <summary>
    /// How long a rank blamed on a timeout has to report its step before it is counted lost. A live rank reports
    /// within milliseconds of the AbandonGeneration every regroup sends; 2 s leaves room for a loaded machine.
    /// </summary>
    public const double SuspectGraceSeconds = 2;

    public static Decision Decide(JobState state, object command, long nowUnixMs = 0) => command switch
    {
        DefineJob c => Define(state, c),
        RegisterWorker c => Register(state, c, nowUnixMs),
        ReportProgress c => Progress(state, c, nowUnixMs),
        ReportCheckpoint c => Checkpoint(state, c),
        ReportPeerLost c => PeerLost(state, c, nowUnixMs),
        ReportStepBoundary c => Boundary(state, c, nowUnixMs),
        LoseWorker c when c.ProcessId is { } pid && state.Member(c.WorkerId)?.ProcessId != pid => Decision.None,
        LoseWorker c => Regrouped(state, Lose(state, c.WorkerId, c.Reason, c.DetectedBy, nowUnixMs), nowUnixMs),
        RegroupTick => Tick(state, nowUnixMs),
        LoseAbsent c => Regrouped(state, LoseAbsentMembers(state, c, nowUnixMs), nowUnixMs),
        CoordinatorRestarted c => state.Job is null || state.IsOver ? Decision.None : Decision.Of(c),
        ReportFinished c => Finish(state, c),
        ReportFailed c => Fail(state, c),
        _ => throw new ArgumentException($"No decision for command {command.GetType().Name}", nameof(command)),
    };

    private static Decision Define(JobState state, DefineJob c)
    {
        if (state.Job is null)
            return c.Job.WorldSize < 1 ? Decision.Refuse($"world size must be at least 1, got {c.Job.WorldSize}") : Decision.Of(new JobDefined(c.Job));
        // Re-submitting the same job (a CLI retry, a restarted coordinator, with or without --resume) is not an error.
        var differences = Differences(state.Job, c.Job);
        return differences.Count == 0
            ? Decision.None
            : Decision.Refuse($"the job in this journal was defined with other settings ({string.Join("; ", differences)}); " +
                              "restart with the same recipe and options to continue it, or use another --job-id or run directory for a new job");
    }

    /// <summary>
    /// The fields in which two job definitions differ, each as "field: journaled → submitted".
    /// <c>Resume</c> does not count: a restarted coordinator may be given --resume or not, it continues
    /// the journaled job either way (workers resume from checkpoints only at the journaled job's start).
    /// </summary>
    public static IReadOnlyList<string> Differences(JobSpec journaled, JobSpec submitted)
    {
        var list = new List<string>();
        void Compare<T>(string field, T a, T b)
        {
            if (!EqualityComparer<T>.Default.Equals(a, b)) list.Add($"{field}: {a} → {b}");
        }
        if (journaled.RecipeHash != submitted.RecipeHash) list.Add($"recipe hash: {journaled.RecipeHash} → {submitted.RecipeHash}");
        else if (journaled.RecipeYaml != submitted.RecipeYaml) list.Add("recipe text (same hash, other comments or layout)");
        Compare("workers", journaled.WorldSize, submitted.WorldSize);
        Compare("max steps", journaled.MaxSteps, submitted.MaxSteps);
        Compare("run directory", journaled.RunDirectory, submitted.RunDirectory);
        Compare("recipe path", journaled.RecipePath, submitted.RecipePath);
        Compare("elastic.min_workers", journaled.MinWorkers, submitted.MinWorkers);
        Compare("elastic.max_workers", journaled.MaxWorld, submitted.MaxWorld);
        Compare("elastic.wait", journaled.ElasticWaitSeconds, submitted.ElasticWaitSeconds);
        Compare("timeout", journaled.TimeoutSeconds, submitted.TimeoutSeconds);
        Compare("tls-data-plane", journaled.TlsDataPlane, submitted.TlsDataPlane);
        return list;
    }

    /// <summary>
    /// After a coordinator restart: the recovered job's members that did not register again within the
    /// window are gone (they died with or after the coordinator, or cannot reach it).
    /// </summary>
    private static IReadOnlyList<IJobEvent> LoseAbsentMembers(JobState state, LoseAbsent c, long now)
    {
        var events = new List<IJobEvent>();
        foreach (var absent in state.Workers.Where(w => !c.Present.Contains(w.WorkerId)).ToList())
        {
            var lost = Lose(state, absent.WorkerId, $"it did not register again within {c.WindowSeconds:0} s of the coordinator's restart", "coordinator", now);
            events.AddRange(lost);
            state = state.ApplyAll(lost);
        }
        return events;
    }

    /// <summary>
    /// A generation's key salt: the time it was decided. The key is HMAC(secret, generation, salt), so the salt need not be
    /// secret or random, only different between jobs that share a secret and reach the same generation number.
    /// </summary>
    private static string KeySalt(long now) => now.ToString("x", System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>Why a worker's predecessor process is counted as lost when a new process registers under its id.</summary>
    public const string ReplacedReason = "a new process registered with its worker id";

    private static Decision Register(JobState state, RegisterWorker c, long now)
    {
        if (state.Job is not { } job) return Decision.Refuse("no job is defined yet");
        if (state.IsOver) return Decision.Refuse(state.Phase == JobPhase.Completed ? $"the job completed at step {state.LastStep}" : $"the job failed: {state.FailureReason}");
        var events = new List<IJobEvent>();
        if (state.Member(c.WorkerId) is { } known)
        {
            if (known.Incarnation == c.Incarnation) return Decision.None; // a retried registration
            // The same id from a new process: its predecessor is gone (a restarted pod or a respawned worker).
            events.AddRange(Lose(state, c.WorkerId, ReplacedReason, "coordinator", now));
            state = state.ApplyAll(events);
        }
        if (state.IsOver) return Decision.Of(events);
        if (state.Phase != JobPhase.Rendezvous && state.Workers.Count >= job.MaxWorld)
            return events.Count > 0 ? Decision.Of(events) : Decision.Refuse($"the job already has elastic.max_workers = {job.MaxWorld} workers");

        var joined = new WorkerJoined(c.WorkerId, c.Host, c.DataPlanePort, c.MetricsPort, c.ProcessId, c.Incarnation);
        events.Add(joined);
        state = state.Apply(joined);
        if (state.Phase == JobPhase.Rendezvous && state.Workers.Count >= job.WorldSize)
        {
            // The last expected worker arrived: ranks follow registration order, and so does the ring.
            var ranks = state.Workers.Select((w, rank) => new RankAssignment(rank, w.WorkerId, w.Host, w.DataPlanePort)).ToList();
            events.Add(new GenerationStarted(state.Generation + 1, ranks, 0, 0, RegroupCauses.Start, KeySalt(now)));
        }
        else if (state.Phase == JobPhase.Regrouping)
            events.AddRange(TryStart(state, now));
        // While running, the actor asks the ranks for a step boundary; their reports start the regroup.
        return Decision.Of(events);
    }

    private static Decision Progress(JobState state, ReportProgress c, long now) =>
        // Rank 0 speaks for the job: after every step all replicas agree (brief, principle 5).
        state.Phase == JobPhase.Running && c.Generation == state.Generation && c.Rank == 0 && c.Step > state.LastStep
            ? Decision.Of(new StepCommitted(c.Generation, c.Step, c.Loss, c.SamplesPerSecond, now))
            : Decision.None;

    private static Decision Checkpoint(JobState state, ReportCheckpoint c) =>
        state.Job is not null && c.Step > state.LastCheckpointStep
            ? Decision.Of(new CheckpointRecorded(c.WorkerId, c.Step, c.Path, c.ManifestChecksum))
            : Decision.None;

    /// <summary>
    /// A rank's collective failed on a peer. The reporter survives and holds its step; the peer it
    /// names is lost unless it has reported itself (then the blame was a neighbour's confusion).
    /// </summary>
    private static Decision PeerLost(JobState state, ReportPeerLost c, long now)
    {
        if (Stale(state, c.WorkerId, c.Generation) is { } stale) return stale;
        var lostId = string.IsNullOrEmpty(c.LostWorkerId) ? state.Ranks.Find(r => r.Rank == c.LostRank)?.WorkerId ?? "" : c.LostWorkerId;
        var events = new List<IJobEvent>();
        if (state.Phase == JobPhase.Running)
            events.Add(new RegroupStarted(state.Generation, RegroupCauses.Lost, $"{lostId} lost at step {c.HeldStep} ({c.Reason})", now));
        if (!state.Held.ContainsKey(c.WorkerId))
            events.Add(new StepHeld(c.WorkerId, state.Generation, c.HeldStep));
        state = state.ApplyAll(events);
        if (lostId != c.WorkerId && state.RankOf(lostId) is not null && state.IsMember(lostId) && !state.Held.ContainsKey(lostId))
        {
            // A closed connection is proof; a timeout is a suspicion (the blamed rank may wait on the frozen one too).
            IJobEvent verdict = c.Suspected
                ? new WorkerSuspected(lostId, state.Generation, c.Reason, c.WorkerId, now)
                : new WorkerLost(lostId, state.Generation, c.Reason, c.WorkerId);
            if (!c.Suspected && Recovery(state, $"{lostId} lost at step {c.HeldStep} ({c.Reason})", now) is { } recovery)
            {
                events.Add(recovery);
                state = state.Apply(recovery);
            }
            events.Add(verdict);
            state = state.Apply(verdict);
        }
        events.AddRange(TryStart(state, now));
        return Decision.Of(events);
    }

    /// <summary>A rank stopped at a step boundary: the ring agreed to (a newcomer, a leaver) or the coordinator abandoned the generation.</summary>
    private static Decision Boundary(JobState state, ReportStepBoundary c, long now)
    {
        // A newcomer still waiting for its first generation, or a member of an older one, may leave at any time.
        if (c.Leaving && !state.IsOver && state.IsMember(c.WorkerId) && (c.Generation != state.Generation || state.RankOf(c.WorkerId) is null))
            return Decision.Of(new WorkerLeft(c.WorkerId, state.Generation, c.HeldStep));
        if (Stale(state, c.WorkerId, c.Generation) is { } stale) return stale;
        var events = new List<IJobEvent>();
        if (state.Phase == JobPhase.Running)
        {
            var (cause, reason) = c.Leaving ? (RegroupCauses.Left, $"{c.WorkerId} leaving at step {c.HeldStep} ({c.Reason})")
                : c.Leavers > 0 ? (RegroupCauses.Left, $"{c.Leavers} worker(s) leaving at step {c.HeldStep}")
                : (RegroupCauses.Joined, $"{string.Join(", ", state.Newcomers.Select(w => w.WorkerId))} joining at step {c.HeldStep}");
            events.Add(new RegroupStarted(state.Generation, cause, reason, now));
        }
        events.Add(c.Leaving ? new WorkerLeft(c.WorkerId, state.Generation, c.HeldStep) : new StepHeld(c.WorkerId, state.Generation, c.HeldStep));
        state = state.ApplyAll(events);
        events.AddRange(TryStart(state, now));
        return Decision.Of(events);
    }

    /// <summary>A report of an earlier generation changes nothing; one from a worker no longer in the job is refused (it stops).</summary>
    private static Decision? Stale(JobState state, string workerId, long generation)
    {
        if (state.Job is null || state.IsOver) return Decision.None;
        if (!state.IsMember(workerId)) return Decision.Refuse($"{workerId} is no longer part of the job (it was counted as lost)");
        if (generation != state.Generation || state.RankOf(workerId) is null) return Decision.None;
        return state.Phase is JobPhase.Running or JobPhase.Regrouping ? null : Decision.None;
    }

    private static IReadOnlyList<IJobEvent> Lose(JobState state, string workerId, string reason, string detectedBy, long now)
    {
        if (state.IsOver || !state.IsMember(workerId)) return [];
        var lost = new WorkerLost(workerId, state.Generation, reason, detectedBy);
        var rank = state.RankOf(workerId);
        if (rank is null || state.Phase is JobPhase.Rendezvous) return [lost]; // it only waited; others may still come
        // A worker that already reported its final figures may exit; that is not a loss.
        if (state.Finished.ContainsKey(rank.Value)) return [new WorkerLeft(workerId, state.Generation, state.Finished[rank.Value].Step)];
        // The coordinator knows only rank 0's last report (twice a second); the survivors' reports say the step exactly.
        var reasonText = $"{workerId} lost ({reason}, detected by {detectedBy}; rank 0 last reported step {state.LastStep})";
        if (state.Phase == JobPhase.Regrouping)
            return Recovery(state, reasonText, now) is { } recovery ? [recovery, lost] : [lost];
        return [new RegroupStarted(state.Generation, RegroupCauses.Lost, reasonText, now), lost];
    }

    /// <summary>A loss during a regroup for a newcomer turns it into a recovery (cause lost, timed from now); null otherwise.</summary>
    private static RegroupStarted? Recovery(JobState state, string reason, long now) =>
        state.Phase == JobPhase.Regrouping && state.RegroupCause == RegroupCauses.Joined
            ? new RegroupStarted(state.Generation, RegroupCauses.Lost, reason, now)
            : null;

    /// <summary>The events of <paramref name="events"/> and, after them, a new generation if the regroup can complete.</summary>
    private static Decision Regrouped(JobState state, IReadOnlyList<IJobEvent> events, long now)
    {
        if (events.Count == 0) return Decision.None;
        var after = state.ApplyAll(events);
        return Decision.Of([.. events, .. TryStart(after, now)]);
    }

    private static Decision Tick(JobState state, long now)
    {
        if (state.Phase != JobPhase.Regrouping || state.Job is not { } job) return Decision.None;
        var events = new List<IJobEvent>();
        var waited = (now - state.RegroupAtUnixMs) / 1000.0;
        void Lose(WorkerLost lost)
        {
            if (Recovery(state, $"{lost.WorkerId} lost ({lost.Reason})", now) is { } recovery)
            {
                events.Add(recovery);
                state = state.Apply(recovery);
            }
            events.Add(lost);
            state = state.Apply(lost);
        }
        foreach (var suspect in state.Suspects.Values.Where(s => (now - s.AtUnixMs) / 1000.0 >= SuspectGraceSeconds).ToList())
            Lose(new WorkerLost(suspect.WorkerId, state.Generation,
                $"{suspect.Reason}; it did not report its step within {SuspectGraceSeconds:0} s of being blamed", suspect.DetectedBy));
        if (waited >= job.TimeoutSeconds)
            foreach (var silent in Pending(state).ToList())
                Lose(new WorkerLost(silent.WorkerId, state.Generation, $"did not report its step within {job.TimeoutSeconds:0.#} s of the regroup", "coordinator"));
        var next = TryStart(state, now);
        events.AddRange(next);
        if (next.Count == 0 && !Pending(state).Any() && waited >= job.ElasticWaitSeconds)
            events.Add(new JobFailed(state.Generation,
                $"only {Candidates(state).Count} worker(s) remain, fewer than elastic.min_workers = {job.MinWorkers}, and none joined within elastic.wait = {job.ElasticWaitSeconds:0.#} s ({state.RegroupReason}); " +
                LastCheckpointHint(state)));
        return Decision.Of(events);
    }

    /// <summary>Ranks of the regrouping generation that are alive and have neither reported the step they hold nor finished.</summary>
    private static IEnumerable<RankAssignment> Pending(JobState state) =>
        state.Ranks.Where(r => state.IsMember(r.WorkerId) && state.RankOf(r.WorkerId) is not null && !state.Held.ContainsKey(r.WorkerId)
                               && !state.Finished.ContainsKey(r.Rank));

    /// <summary>Who would form the next generation: survivors in their old rank order, then newcomers in registration order, up to max_workers.</summary>
    private static List<WorkerJoined> Candidates(JobState state)
    {
        var survivors = state.Ranks.Where(r => state.Held.ContainsKey(r.WorkerId) && state.RankOf(r.WorkerId) is not null)
            .Select(r => state.Member(r.WorkerId)).OfType<WorkerJoined>();
        return survivors.Concat(state.Newcomers).Take(state.Job!.MaxWorld).ToList();
    }

    /// <summary>
    /// Once every live member of the regrouping generation has reported its step: the next generation,
    /// from the highest step held (survivors of a ring that failed part-way may be one step apart), the
    /// state of the first rank holding it adopted by all. Nothing while reports are missing or the
    /// workers are fewer than <c>elastic.min_workers</c> (the tick fails the job after <c>elastic.wait</c>).
    /// </summary>
    private static IReadOnlyList<IJobEvent> TryStart(JobState state, long now)
    {
        if (state.Phase != JobPhase.Regrouping || Pending(state).Any()) return [];
        // A held step of -1: the replica holds nothing to keep (a newcomer cut off in its first state broadcast). Nor does
        // one below the step its generation started from: a newcomer whose source was lost before the broadcast began
        // still has its fresh step-0 weights, and starting from them would silently throw the job's progress away.
        var floor = Math.Max(0, state.Current?.StartStep ?? 0);
        bool Holds(string workerId) => state.Held.TryGetValue(workerId, out var held) && held >= floor && state.IsMember(workerId);
        if (!state.Held.Keys.Any(Holds))
            return [new JobFailed(state.Generation,
                $"every worker of generation {state.Generation} was lost ({state.RegroupReason}), so no replica holds the state in memory; " + LastCheckpointHint(state))];
        var members = Candidates(state);
        if (members.Count < Math.Max(1, state.Job!.MinWorkers)) return [];
        var start = members.Where(m => Holds(m.WorkerId)).Max(m => state.Held[m.WorkerId]);
        var source = members.FindIndex(m => Holds(m.WorkerId) && state.Held[m.WorkerId] == start);
        var ranks = members.Select((w, rank) => new RankAssignment(rank, w.WorkerId, w.Host, w.DataPlanePort)).ToList();
        // Ranks that finished the job before the regroup are done, not newcomers of the next generation: they leave.
        var finished = state.Ranks.Where(r => state.Finished.ContainsKey(r.Rank) && state.RankOf(r.WorkerId) is not null && state.IsMember(r.WorkerId))
            .Select(r => (IJobEvent)new WorkerLeft(r.WorkerId, state.Generation, state.Finished[r.Rank].Step));
        return [.. finished, new GenerationStarted(state.Generation + 1, ranks, start, source, state.RegroupCause, KeySalt(now))];
    }

    private static string LastCheckpointHint(JobState state) => state.LastCheckpointPath is { } path
        ? $"the last checkpoint is {path} (step {state.LastCheckpointStep}); continue with --resume"
        : $"no checkpoint was recorded yet; --resume continues from the newest valid one in {state.Job?.RunDirectory ?? "the run directory"}/checkpoints, if any";

    private static Decision Finish(JobState state, ReportFinished c)
    {
        if (state.Phase != JobPhase.Running || state.RankOf(c.WorkerId) != c.Rank || state.Finished.ContainsKey(c.Rank))
            return Decision.None;
        var finished = new WorkerFinished(c);
        if (state.Finished.Count + 1 < state.Ranks.Count) return Decision.Of(finished);
        var lastStep = state.Finished.Values.Select(f => f.Step).Append(c.Step).Max();
        return Decision.Of(finished, new JobCompleted(state.Generation, lastStep));
    }

    private static Decision Fail(JobState state, ReportFailed c) =>
        state.Job is null || state.IsOver
            ? Decision.None
            : Decision.Of(new JobFailed(state.Generation, $"{c.WorkerId} (rank {c.Rank}) failed: {c.Reason}"));
}
