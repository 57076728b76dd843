using Akka.Actor;
using Akka.Event;
using Akka.Persistence;
using Pretrain.Coordinator.Security;
using Pretrain.Coordinator.State;
using Pretrain.Shared.Messages;
using Pretrain.Shared.Security;
using Pretrain.Shared.Telemetry;

namespace Pretrain.Coordinator.Actors;

/// <summary>
/// The coordinator's one job, event-sourced: every decision is made by <see cref="JobDecisions"/>,
/// persisted, folded into <see cref="JobState"/>, and only then acted on (replies, generation
/// broadcast, StopWorker). Worker actors are death-watched; a lost worker starts a regroup (elastic
/// training), and a tick bounds every regroup by the job's timeout and <c>elastic.wait</c>.
/// </summary>
public sealed class JobActor : ReceivePersistentActor, IWithTimers
{
    private static readonly TimeSpan TickInterval = TimeSpan.FromMilliseconds(500);

    /// <summary>Sent by the reconnect timer of a restarted coordinator: members not registered again by now are lost.</summary>
    private sealed record ReconnectDeadline(double WindowSeconds);

    private JobState _state = JobState.Empty;

    // Live worker actors by worker id. Not persisted: refs do not survive a coordinator restart, and
    // workers re-register when it is back (brief, principle 2).
    private readonly Dictionary<string, IActorRef> _workers = new();
    private readonly IJobObserver _observer;
    private readonly JoinGate _gate;

    public override string PersistenceId { get; }

    public ITimerScheduler Timers { get; set; } = null!;

    public static Props Props(string persistenceId, IJobObserver observer, JobSecret secret, int? snapshotEvery = null) =>
        Akka.Actor.Props.Create(() => new JobActor(persistenceId, observer, secret, snapshotEvery));

    public JobActor(string persistenceId, IJobObserver observer, JobSecret secret, int? snapshotEvery = null)
    {
        PersistenceId = persistenceId;
        _observer = observer;
        _gate = new JoinGate(secret);
        // Every cause exported from the start at 0, so the first recovery is a step Prometheus' increase() sees (a
        // series that appears at 1 has no increase) and a dashboard shows 0 rather than "No data" for a healthy job.
        foreach (var cause in new[] { RegroupCauses.Lost, RegroupCauses.Left, RegroupCauses.Joined })
            PretrainMetrics.RecoveriesTotal.WithLabels(cause);
        _snapshotEvery = snapshotEvery ?? SnapshotInterval();

        Recover<SnapshotOffer>(offer =>
        {
            if (offer.Snapshot is not JobSnapshot snapshot) return;
            _state = JobSnapshots.ToState(snapshot);
            _snapshotAt = offer.Metadata.SequenceNr;
        });
        Recover<IJobEvent>(e =>
        {
            _state = _state.Apply(e);
            _replayed++;
        });
        Recover<RecoveryCompleted>(_ => OnRecovered());
        Command<SaveSnapshotSuccess>(saved => DeleteSnapshots(new SnapshotSelectionCriteria(saved.Metadata.SequenceNr - 1)));
        Command<SaveSnapshotFailure>(failed => _log.Warning("could not save a snapshot of job {0} at event {1}: {2}; recovery replays more events, nothing is lost",
            PersistenceId, failed.Metadata.SequenceNr, failed.Cause.Message));
        Command<DeleteSnapshotsSuccess>(_ => { });
        Command<DeleteSnapshotsFailure>(_ => { });

        Command<DefineJob>(c => Handle(c,
            onDone: sender => sender.Tell(new JobDefinitionAnswered(true, null)),
            onRefused: (sender, reason) => sender.Tell(new JobDefinitionAnswered(false, reason))));
        Command<RequestJoinChallenge>(OnChallengeRequested);
        Command<RegisterWorker>(OnRegister);
        Command<ReportProgress>(c =>
        {
            _observer.OnProgress(c);
            Handle(c);
        });
        Command<ReportCheckpoint>(c => Handle(c));
        // Final reports are acknowledged once journaled (or refused as stale), so a worker exits
        // only when what it said cannot be lost.
        // A report refused because its sender is no longer part of the job tells it to stop.
        // Such a sender was counted as lost while it lived (frozen, cut off): it registers again as a newcomer.
        Command<ReportPeerLost>(c => Handle(c, onRefused: (s, reason) => s.Tell(new StopWorker(reason, Rejoin: true))));
        Command<ReportStepBoundary>(c => Handle(c, Acknowledge(c.WorkerId, "step-boundary"), (s, reason) => s.Tell(new StopWorker(reason, Rejoin: true))));
        Command<RegroupTick>(c => Handle(c));
        Command<LoseWorker>(c => Handle(c));   // from the local launcher, which saw the process exit
        Command<ReportFinished>(c => Handle(c, Acknowledge(c.WorkerId, "finished"), (s, _) => Acknowledge(c.WorkerId, "finished")(s)));
        Command<ReportFailed>(c => Handle(c, Acknowledge(c.WorkerId, "failed"), (s, _) => Acknowledge(c.WorkerId, "failed")(s)));
        Command<CoordinatorRestarted>(c => Handle(c));
        Command<ReconnectDeadline>(d => Handle(new LoseAbsent([.. _workers.Keys], d.WindowSeconds)));
        Command<Terminated>(OnTerminated);
        Command<FetchJobStatus>(_ => Sender.Tell(_state.ToStatus()));
        Command<FetchJobState>(_ => Sender.Tell(_state));
    }

    private void OnRecovered()
    {
        var seconds = System.Diagnostics.Stopwatch.GetElapsedTime(_startedAt).TotalSeconds;
        _recovery = _snapshotAt > 0
            ? $"in {seconds:0.00} s (snapshot at event {_snapshotAt}, then {_replayed} events)"
            : $"in {seconds:0.00} s ({_replayed} events)";
        if (_replayed > 0 || _snapshotAt > 0) _log.Info("job {0} recovered from the journal {1}", PersistenceId, _recovery);
        PretrainMetrics.Workers.Set(_state.Workers.Count);
        PretrainMetrics.Generation.Set(_state.Generation);
        PretrainMetrics.WorldSize.Set(_state.Ranks.Count);
        if (_state.IsOver) _observer.OnOutcome(JobOutcome.From(_state));
        _lastRecoveryReported = _state.Recoveries.Count;
        if (_state.Phase == JobPhase.Regrouping) Timers.StartPeriodicTimer("regroup", new RegroupTick(), TickInterval);
        // A job taken up from the journal by a new coordinator: its workers (training on meanwhile) are
        // unknown to this process until they register again. Journal the restart, then give them a window.
        if (_state.Job is not null && !_state.IsOver)
            Self.Tell(new CoordinatorRestarted(_state.Generation, _state.LastStep, Now()));
    }

    /// <summary>How long a restarted coordinator waits for the recovered job's members to register again.</summary>
    private double ReconnectWindowSeconds => Math.Max(15, _state.Job?.TimeoutSeconds ?? 30);

    /// <summary>
    /// Events between snapshots of the job state (the snapshot store is in the journal's database). A
    /// restarted coordinator loads the newest and replays only the events after it, so a three-day job
    /// recovers as fast as a short one (docs/BENCHMARKS.md, journal recovery). Every event stays in the
    /// journal: it is the job's story. <c>PRETRAIN_SNAPSHOT_EVERY</c> overrides it (0 = never; the benchmark).
    /// </summary>
    public const int DefaultSnapshotEvery = 1000;
    public const string SnapshotEveryVariable = "PRETRAIN_SNAPSHOT_EVERY";

    private static int SnapshotInterval() =>
        int.TryParse(Environment.GetEnvironmentVariable(SnapshotEveryVariable), out var every) && every >= 0 ? every : DefaultSnapshotEvery;

    private readonly int _snapshotEvery;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly long _startedAt = System.Diagnostics.Stopwatch.GetTimestamp();
    private long _snapshotAt, _replayed;
    private string _recovery = "";

    private static long Now() => DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();

    // The journal is the job's memory: if it cannot be written or read the job cannot go on safely.
    // Akka stops the actor after this; its own logging (base) would print the stack trace on the terminal, so one line instead.
    protected override void OnPersistFailure(Exception cause, object @event, long sequenceNr)
    {
        string journal = Pretrain.Shared.IO.IoErrors.Describe(cause.GetBaseException());
        string what = @event is JobFailed failed
            ? $"{failed.Reason}; the journal could not record that failure ({journal})"
            : $"the journal could not record {@event.GetType().Name} (event {sequenceNr}): {journal}";
        _log.Error("job {0}: {1}", PersistenceId, what);
        foreach (var worker in _workers.Values) worker.Tell(new StopWorker("the coordinator's journal cannot be written: " + journal));
        _observer.OnOutcome(JobOutcome.From(_state) with { Succeeded = false, FailureReason = what });
    }

    protected override void OnRecoveryFailure(Exception reason, object? message = null)
    {
        _observer.OnOutcome(JobOutcome.From(_state) with { Succeeded = false, FailureReason = $"journal recovery failed: {reason.Message}" });
        base.OnRecoveryFailure(reason, message);
    }

    /// <summary>A fresh single-use nonce for the registration to come, and this coordinator's proof of the secret.</summary>
    private void OnChallengeRequested(RequestJoinChallenge c)
    {
        var (challenge, refused) = _gate.Answer(c, Environment.TickCount64);
        if (refused is not null) Refuse(c.WorkerId ?? "", refused, mayRetry: false);
        else Sender.Tell(challenge);
    }

    private void OnRegister(RegisterWorker c)
    {
        // Proof first: nothing unproven is tracked or decided on, so it can neither change the job nor fill memory.
        if (c.Host is null || c.Incarnation is null)
        {
            Refuse(c.WorkerId ?? "", new JoinGate.Refusal("malformed", "its registration leaves out its host or incarnation"), mayRetry: false);
            return;
        }
        if (!_gate.Vouched(c))
        {
            if (_gate.Check(c.WorkerId, c.Nonce, c.Proof, JoinProof.Verify(_gate.Secret, c), Environment.TickCount64) is { } refusal)
            {
                Refuse(c.WorkerId ?? "", refusal, mayRetry: false);
                return;
            }
            Context.System.EventStream.Publish(new MemberProven(Sender.Path.Address));
        }
        // Workers may connect before the job is submitted; they get their answer once it is.
        if (_state.Job is null)
        {
            _gate.Vouch(c);
            Stash.Stash();
            return;
        }
        if (!FromMember(Sender)) return;    // it retries every second; by then its node is Up or gone
        var retry = _state.Member(c.WorkerId)?.Incarnation == c.Incarnation;
        // A worker id names one process. Another process under the id of a member that is alive (reachable, its actor
        // tracked) is refused: it is a mistake or an intruder, not a restart. Once that member is gone (its node
        // unreachable or removed) the same request replaces it — a restarted pod whose predecessor died a moment ago
        // is only made to wait for the failure detector, so it may retry.
        if (!retry && _state.Member(c.WorkerId) is { } holder && _workers.TryGetValue(c.WorkerId, out var live) && IsLive(live))
        {
            Refuse(c.WorkerId, new JoinGate.Refusal("duplicate_worker_id", $"worker id {c.WorkerId} is held by a live process (pid {holder.ProcessId} on " +
                $"{holder.Host}, node {live.Path.Address}); start this process with another --worker-id, or stop that one first"), mayRetry: true);
            return;
        }
        Handle(c,
            onDone: sender =>
            {
                // A new worker was answered when its WorkerJoined was persisted. A retry (possibly from
                // a restarted worker actor) is answered again, with its generation in case that was lost.
                if (!retry) return;
                if (!_workers.ContainsKey(c.WorkerId) && _state.CoordinatorRestarts > 0) _observer.OnReconnected(c);
                Track(c.WorkerId, sender);
                sender.Tell(new WorkerRegistered(c.WorkerId, _state.Job));
                if (_state.Phase == JobPhase.Running && _state.RankOf(c.WorkerId) is not null && _state.Current is { } current) sender.Tell(current);
            },
            onRefused: (sender, reason) => sender.Tell(new StopWorker(reason, JobCompleted: _state.Phase == JobPhase.Completed,
                JobFailed: _state.Phase == JobPhase.Failed)));
    }

    /// <summary>Refuses a request from the sender, logging its address and counting it; the job's state is not touched.</summary>
    private void Refuse(string workerId, JoinGate.Refusal refusal, bool mayRetry)
    {
        _log.Warning("refused registration of {0} from {1}: {2}", workerId, Sender.Path.Address, refusal.Why);
        PretrainMetrics.Rejected("control", refusal.Reason);
        Sender.Tell(new RegistrationRefused(workerId, refusal.Why, mayRetry));
    }

    /// <summary>A tracked worker actor whose node is an Up member (<see cref="FromMember"/>) that the cluster can reach now.</summary>
    private bool IsLive(IActorRef worker) =>
        FromMember(worker) && !Akka.Cluster.Cluster.Get(Context.System).State.Unreachable.Any(m => m.Address.Equals(worker.Path.Address));

    /// <summary>
    /// Only a worker whose node is an Up member of this coordinator's cluster is tracked. A restarted
    /// coordinator also hears, by plain remoting, the actor of a worker's old node (of the dead
    /// coordinator's cluster) retrying its registration; that node is about to be downed, and tracking
    /// its actor would count the worker as lost when it stops, while the worker's new node registers.
    /// </summary>
    private bool FromMember(IActorRef sender)
    {
        var address = sender.Path.Address;
        if (address.HasLocalScope) return true;
        var cluster = Akka.Cluster.Cluster.Get(Context.System);
        if (address.Equals(cluster.SelfAddress)) return true;
        return cluster.State.Members.Any(m => m.Address.Equals(address) && m.Status is Akka.Cluster.MemberStatus.Up or Akka.Cluster.MemberStatus.WeaklyUp);
    }

    private void OnTerminated(Terminated t)
    {
        var workerId = _workers.FirstOrDefault(kv => kv.Value.Equals(t.ActorRef)).Key;
        if (workerId is null) return;
        _workers.Remove(workerId);
        var reason = t.AddressTerminated ? "its node became unreachable and was removed from the cluster" : "its actor stopped";
        Handle(new LoseWorker(workerId, reason, "coordinator"));
    }

    /// <summary>Decide, persist the events, apply each, then react to it.</summary>
    private void Handle(object command, Action<IActorRef>? onDone = null, Action<IActorRef, string>? onRefused = null)
    {
        var sender = Sender;
        var decision = JobDecisions.Decide(_state, command, Now());
        if (decision.Refusal is { } reason)
        {
            onRefused?.Invoke(sender, reason);
            return;
        }
        if (decision.Events.Count == 0)
        {
            onDone?.Invoke(sender);
            return;
        }
        var last = decision.Events[^1];
        PersistAll(decision.Events, e =>
        {
            _state = _state.Apply(e);
            if (_snapshotEvery > 0 && LastSequenceNr % _snapshotEvery == 0) SaveSnapshot(JobSnapshots.ToSnapshot(_state));
            React(e, sender);
            if (ReferenceEquals(e, last)) onDone?.Invoke(sender);
        });
    }

    private void React(IJobEvent e, IActorRef sender)
    {
        switch (e)
        {
            case JobDefined:
                Stash.UnstashAll();
                break;
            case WorkerJoined w:
                // Answer before the GenerationStarted that may follow in the same batch.
                Track(w.WorkerId, sender);
                sender.Tell(new WorkerRegistered(w.WorkerId, _state.Job!));
                PretrainMetrics.Workers.Set(_state.Workers.Count);
                if (_state.Phase == JobPhase.Running && _state.RankOf(w.WorkerId) is null)
                    TellRanks(new RequestStepBoundary(_state.Generation, $"{w.WorkerId} is waiting to join"));
                break;
            case RegroupStarted r:
                // Ranks still training (waiting on a frozen peer, or not yet aware) stop now and report.
                TellRanks(new AbandonGeneration(r.Generation, r.Reason));
                Timers.StartPeriodicTimer("regroup", new RegroupTick(), TickInterval);
                _observer.OnRegroup(r);
                break;
            case GenerationStarted g:
                Timers.Cancel("regroup");
                PretrainMetrics.Generation.Set(g.Generation);
                PretrainMetrics.WorldSize.Set(g.Ranks.Count);
                if (g.Cause != RegroupCauses.Start) PretrainMetrics.RecoveriesTotal.WithLabels(g.Cause).Inc();
                foreach (var rank in g.Ranks)
                    if (_workers.TryGetValue(rank.WorkerId, out var worker)) worker.Tell(g);
                _observer.OnGeneration(g, _state);
                // Newcomers beyond max_workers keep waiting; a regroup admits them when room appears.
                break;
            case StepCommitted s:
                if (_state.Recoveries.Count > 0 && _state.RecoveringSinceUnixMs is null && s.Generation == _state.Generation
                    && _lastRecoveryReported != _state.Recoveries.Count)
                {
                    _lastRecoveryReported = _state.Recoveries.Count;
                    PretrainMetrics.RecoverySeconds.Set(_state.Recoveries[^1]);
                    _observer.OnRecovered(_state.Generation, s.Step, _state.Recoveries[^1]);
                }
                PretrainMetrics.StepsTotal.IncTo(s.Step);
                PretrainMetrics.Loss.Set(s.Loss);
                PretrainMetrics.SamplesPerSecond.Set(s.SamplesPerSecond);
                break;
            case CheckpointRecorded:
                PretrainMetrics.CheckpointPublished();
                break;
            case WorkerLost l:
                if (_workers.Remove(l.WorkerId, out var lost))
                {
                    Context.Unwatch(lost);
                    // A worker counted as lost may still be alive (frozen, then woken; wrongly blamed):
                    // it must not train on in a generation that is gone.
                    // It drops that generation and registers again as a newcomer; a process replaced under its id stops.
                    lost.Tell(new StopWorker($"{l.WorkerId} was counted as lost in generation {l.Generation}: {l.Reason}",
                        Rejoin: l.Reason != JobDecisions.ReplacedReason));
                    // Down its node now rather than after the failure detector and the split-brain resolver
                    // (~5 s): until it is gone, the cluster cannot converge and no newcomer can join.
                    if (!lost.Path.Address.Equals(Akka.Cluster.Cluster.Get(Context.System).SelfAddress))
                        Akka.Cluster.Cluster.Get(Context.System).Down(lost.Path.Address);
                }
                PretrainMetrics.Workers.Set(_state.Workers.Count);
                _observer.OnLost(l);
                break;
            case WorkerLeft l:
                if (_workers.Remove(l.WorkerId, out var left)) Context.Unwatch(left);
                PretrainMetrics.Workers.Set(_state.Workers.Count);
                _observer.OnLeft(l);
                break;
            case JobFailed f:
                Timers.Cancel("regroup");
                // JobFailed: each exits 1, so a Kubernetes Job fails rather than replacing pods the job no longer has a use for.
                foreach (var worker in _workers.Values) worker.Tell(new StopWorker(f.Reason, JobFailed: true));
                _observer.OnOutcome(JobOutcome.From(_state));
                break;
            case JobCompleted c:
                // A newcomer still waiting for a generation (a replacement that registered as the last step ran) has
                // nothing left to do: it exits 0, so a Kubernetes Job counts its index complete.
                foreach (var (id, worker) in _workers)
                    if (_state.RankOf(id) is not { } rank || !_state.Finished.ContainsKey(rank))
                        worker.Tell(new StopWorker($"the job completed at step {c.Step}", JobCompleted: true));
                _observer.OnOutcome(JobOutcome.From(_state));
                break;
            case CoordinatorRestarted r:
                Timers.StartSingleTimer("reconnect", new ReconnectDeadline(ReconnectWindowSeconds), TimeSpan.FromSeconds(ReconnectWindowSeconds));
                _observer.OnRestarted(r, _state, _recovery);
                break;
        }
    }

    private int _lastRecoveryReported;

    private void TellRanks(object message)
    {
        foreach (var rank in _state.Ranks)
            if (_workers.TryGetValue(rank.WorkerId, out var worker)) worker.Tell(message);
    }

    private static Action<IActorRef> Acknowledge(string workerId, string report) =>
        sender => sender.Tell(new ReportAcknowledged(workerId, report));

    private void Track(string workerId, IActorRef worker)
    {
        if (_workers.TryGetValue(workerId, out var previous) && !previous.Equals(worker)) Context.Unwatch(previous);
        _workers[workerId] = worker;
        Context.Watch(worker);
    }
}
