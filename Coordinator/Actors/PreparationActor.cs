using Akka.Actor;
using Akka.Event;
using Akka.Persistence;
using Pretrain.Coordinator.Security;
using Pretrain.Coordinator.State;
using Pretrain.Data.Preparation;
using Pretrain.Shared.Messages;
using Pretrain.Shared.Security;
using Pretrain.Shared.Telemetry;

namespace Pretrain.Coordinator.Actors;

/// <summary>
/// One corpus preparation, event-sourced: <see cref="PreparationDecisions"/> decide, the events are
/// persisted and folded into <see cref="PreparationState"/>, and only then does the actor act — hand a
/// task to a worker, or run it itself (off the mailbox, piped back) when no worker is connected.
/// Workers are death-watched; a lost worker's tasks are handed out again.
/// </summary>
public sealed class PreparationActor : ReceivePersistentActor
{
    sealed record Verified(IReadOnlyList<TaskOnDisk> Tasks);
    sealed record LocalTaskRan(PreparationTaskAssigned Assignment, long Bytes, string? Error);
    sealed record PlanFinished;
    sealed record Failed(string Reason);

    private PreparationState _state = PreparationState.Empty;
    private IPreparationPlan? _plan;
    private Dictionary<string, PreparationTask> _tasks = [];
    // Live workers by id, in registration order. Not persisted: refs do not survive a restart.
    private readonly Dictionary<string, IActorRef> _workers = [];
    private readonly IPreparationObserver _observer;
    private readonly JoinGate _gate;
    private readonly CancellationTokenSource _stopping = new();
    private bool _verified, _finishing, _failed;
    private int _skipped;

    public override string PersistenceId { get; }

    public static Props Props(string persistenceId, IPreparationObserver observer, JobSecret secret) =>
        Akka.Actor.Props.Create(() => new PreparationActor(persistenceId, observer, secret));

    public PreparationActor(string persistenceId, IPreparationObserver observer, JobSecret secret)
    {
        PersistenceId = persistenceId;
        _observer = observer;
        _gate = new JoinGate(secret);

        Recover<IPreparationEvent>(e => _state = _state.Apply(e));
        Recover<RecoveryCompleted>(_ => _state = _state.Recovered());

        Command<StartPreparation>(OnStart);
        Command<Verified>(v => Persist(PreparationDecisions.Verify(_state, v.Tasks), () =>
        {
            _verified = true;
            _skipped = _state.Completed.Count;
            _observer.OnResumed(Progress());
            Dispatch();
        }));
        Command<RequestJoinChallenge>(c =>
        {
            var (challenge, refused) = _gate.Answer(c, Environment.TickCount64);
            if (refused is not null) Refuse(c.WorkerId ?? "", refused);
            else Sender.Tell(challenge);
        });
        Command<RegisterPreparer>(OnRegister);
        Command<ReportTaskCompleted>(c => Persist(PreparationDecisions.Complete(_state, c), Dispatch));
        Command<ReportTaskFailed>(f => Fail($"task {f.TaskId} failed on {f.WorkerId}: {f.Reason}"));
        Command<LocalTaskRan>(r =>
        {
            if (r.Error is { } error) Fail($"task {r.Assignment.TaskId} failed: {error}");
            else Persist(PreparationDecisions.Complete(_state, new ReportTaskCompleted(r.Assignment.TaskId, r.Assignment.WorkerId, r.Assignment.Attempt, r.Bytes)), Dispatch);
        });
        Command<PlanFinished>(_ => Persist(PreparationDecisions.Finish(_state), () => Conclude(null)));
        Command<Failed>(f => Fail(f.Reason));
        Command<Terminated>(OnTerminated);
        Command<FetchPreparationState>(_ => Sender.Tell(_state));
    }

    private void OnStart(StartPreparation c)
    {
        var sender = Sender;
        var decision = PreparationDecisions.Define(_state, c.Spec, [.. c.Plan.Tasks.Select(t => t.Id)]);
        if (decision.Refusal is { } reason)
        {
            sender.Tell(new PreparationStartAnswered(false, reason));
            return;
        }
        Persist(decision, () =>
        {
            sender.Tell(new PreparationStartAnswered(true, null));
            if (_plan is not null) return;   // a retried start
            _plan = c.Plan;
            _tasks = c.Plan.Tasks.ToDictionary(t => t.Id);
            Stash.UnstashAll();
            // A finished preparation is not verified again: its index.json already vouches for the shards.
            if (_state.IsFinished)
            {
                _skipped = _state.TaskIds.Count;
                _observer.OnResumed(Progress());
                Conclude(null);
                return;
            }
            // IsDone reads and checksums outputs: seconds for a large corpus, so never on the mailbox.
            var plan = c.Plan;
            Task.Run(() => new Verified([.. plan.Tasks.Select(t => new TaskOnDisk(t.Id, t.Bytes, plan.IsDone(t)))]), _stopping.Token)
                .PipeTo(Self, failure: e => new Failed("verifying finished tasks failed: " + e.GetBaseException().Message));
        });
    }

    private void OnRegister(RegisterPreparer r)
    {
        // Proof first (Shared/Security/JoinProof.cs): an unproven worker is never handed a task.
        if (!_gate.Vouched(r) && _gate.Check(r.WorkerId, r.Nonce, r.Proof, JoinProof.Verify(_gate.Secret, r), Environment.TickCount64) is { } refusal)
        {
            Refuse(r.WorkerId ?? "", refusal);
            return;
        }
        // Workers may connect before the preparation is started; they get their answer once it is.
        if (_plan is null)
        {
            _gate.Vouch(r);
            Stash.Stash();
            return;
        }
        if (_workers.TryGetValue(r.WorkerId, out var previous) && !previous.Equals(Sender)) Context.Unwatch(previous);
        _workers[r.WorkerId] = Sender;
        Context.Watch(Sender);
        Sender.Tell(new PreparerRegistered(r.WorkerId, _state.Spec!));
        if (_state.IsFinished || _failed) Sender.Tell(new StopWorker(_failed ? "the preparation failed" : PreparationStopReasons.Finished));
        else Dispatch();
    }

    private void Refuse(string workerId, JoinGate.Refusal refusal)
    {
        Context.GetLogger().Warning("refused registration of {0} from {1}: {2}", workerId, Sender.Path.Address, refusal.Why);
        PretrainMetrics.Rejected("control", refusal.Reason);
        Sender.Tell(new RegistrationRefused(workerId, refusal.Why, MayRetry: false));
    }

    private void OnTerminated(Terminated t)
    {
        var workerId = _workers.FirstOrDefault(kv => kv.Value.Equals(t.ActorRef)).Key;
        if (workerId is null) return;
        _workers.Remove(workerId);
        var reason = t.AddressTerminated ? "its node became unreachable" : "its actor stopped";
        Persist(PreparationDecisions.Lose(_state, workerId, reason), Dispatch);
    }

    /// <summary>Hands out pending tasks, or writes the index once every task is complete.</summary>
    private void Dispatch()
    {
        if (!_verified || _failed || _finishing || _state.IsFinished) return;
        if (_state.AllCompleted)
        {
            _finishing = true;
            var plan = _plan!;
            Task.Run(() => { plan.Finish(); return new PlanFinished(); }, _stopping.Token)
                .PipeTo(Self, failure: e => new Failed("writing the index failed: " + e.GetBaseException().Message));
            return;
        }
        Persist(PreparationDecisions.Assign(_state, [.. _workers.Keys]), () => { });
    }

    /// <summary>Persist the decision's events, apply each, react to each, then continue.</summary>
    private void Persist(PreparationDecision decision, Action then)
    {
        if (decision.Events.Count == 0) { then(); return; }
        var last = decision.Events[^1];
        PersistAll(decision.Events, e =>
        {
            _state = _state.Apply(e);
            React(e);
            if (ReferenceEquals(e, last)) then();
        });
    }

    private void React(IPreparationEvent e)
    {
        switch (e)
        {
            case PreparationTaskAssigned a when a.WorkerId == PreparationState.Coordinator:
                RunLocally(a);
                break;
            case PreparationTaskAssigned a:
                _workers[a.WorkerId].Tell(a);
                break;
            case PreparationTaskCompleted when _verified:
                _observer.OnProgress(Progress());
                break;
        }
    }

    private void RunLocally(PreparationTaskAssigned a)
    {
        var task = _tasks[a.TaskId];
        var plan = _plan!;
        var ct = _stopping.Token;
        Task.Run(() => { plan.Run(task, null, ct); return new LocalTaskRan(a, task.Bytes, null); }, ct)
            .PipeTo(Self, failure: e => new LocalTaskRan(a, task.Bytes, e.GetBaseException().Message));
    }

    private PreparationProgress Progress() =>
        new(_state.Completed.Count, _state.TaskIds.Count, _state.CompletedBytes, _tasks.Values.Sum(t => t.Bytes));

    private void Fail(string reason)
    {
        if (_failed) return;
        _failed = true;
        Conclude(reason);
    }

    private void Conclude(string? failure)
    {
        foreach (var worker in _workers.Values) worker.Tell(new StopWorker(failure ?? PreparationStopReasons.Finished));
        _observer.OnOutcome(new PreparationOutcome(failure is null, _state.TaskIds.Count, _skipped, _state.CompletedBytes, failure));
    }

    // The journal is the preparation's memory: without it, "never a task twice" cannot be kept.
    protected override void OnPersistFailure(Exception cause, object @event, long sequenceNr)
    {
        Fail($"journal write failed: {cause.Message}");
        base.OnPersistFailure(cause, @event, sequenceNr);
    }

    protected override void OnRecoveryFailure(Exception reason, object? message = null)
    {
        Fail($"journal recovery failed: {reason.Message}");
        base.OnRecoveryFailure(reason, message);
    }

    protected override void PostStop() => _stopping.Cancel();
}
