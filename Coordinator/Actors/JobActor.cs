using Akka.Actor;
using Akka.Persistence;
using Pretrain.Coordinator.State;
using Pretrain.Shared.Messages;
using Pretrain.Shared.Telemetry;

namespace Pretrain.Coordinator.Actors;

/// <summary>
/// The coordinator's one job, event-sourced: every decision is made by <see cref="JobDecisions"/>,
/// persisted, folded into <see cref="JobState"/>, and only then acted on (replies, generation
/// broadcast, StopWorker). Worker actors are death-watched; a lost worker fails the job.
/// </summary>
public sealed class JobActor : ReceivePersistentActor
{
    private JobState _state = JobState.Empty;

    // Live worker actors by worker id. Not persisted: refs do not survive a coordinator restart, and
    // workers re-register when it is back (brief, principle 2).
    private readonly Dictionary<string, IActorRef> _workers = new();
    private readonly IJobObserver _observer;

    public override string PersistenceId { get; }

    public static Props Props(string persistenceId, IJobObserver observer) =>
        Akka.Actor.Props.Create(() => new JobActor(persistenceId, observer));

    public JobActor(string persistenceId, IJobObserver observer)
    {
        PersistenceId = persistenceId;
        _observer = observer;

        Recover<IJobEvent>(e => _state = _state.Apply(e));
        Recover<RecoveryCompleted>(_ => OnRecovered());

        Command<DefineJob>(c => Handle(c,
            onDone: sender => sender.Tell(new JobDefinitionAnswered(true, null)),
            onRefused: (sender, reason) => sender.Tell(new JobDefinitionAnswered(false, reason))));
        Command<RegisterWorker>(OnRegister);
        Command<ReportProgress>(c =>
        {
            _observer.OnProgress(c);
            Handle(c);
        });
        Command<ReportCheckpoint>(c => Handle(c));
        // Final reports are acknowledged once journaled (or refused as stale), so a worker exits
        // only when what it said cannot be lost.
        Command<ReportPeerLost>(c => Handle(c, Acknowledge(c.WorkerId, "peer-lost"), (s, _) => Acknowledge(c.WorkerId, "peer-lost")(s)));
        Command<ReportFinished>(c => Handle(c, Acknowledge(c.WorkerId, "finished"), (s, _) => Acknowledge(c.WorkerId, "finished")(s)));
        Command<ReportFailed>(c => Handle(c, Acknowledge(c.WorkerId, "failed"), (s, _) => Acknowledge(c.WorkerId, "failed")(s)));
        Command<Terminated>(OnTerminated);
        Command<FetchJobStatus>(_ => Sender.Tell(_state.ToStatus()));
        Command<FetchJobState>(_ => Sender.Tell(_state));
    }

    private void OnRecovered()
    {
        PretrainMetrics.Workers.Set(_state.Workers.Count);
        PretrainMetrics.Generation.Set(_state.Generation);
        if (_state.IsOver) _observer.OnOutcome(JobOutcome.From(_state));
    }

    // The journal is the job's memory: if it cannot be written or read the job cannot go on safely.
    protected override void OnPersistFailure(Exception cause, object @event, long sequenceNr)
    {
        _observer.OnOutcome(JobOutcome.From(_state) with { Succeeded = false, FailureReason = $"journal write failed: {cause.Message}" });
        base.OnPersistFailure(cause, @event, sequenceNr);
    }

    protected override void OnRecoveryFailure(Exception reason, object? message = null)
    {
        _observer.OnOutcome(JobOutcome.From(_state) with { Succeeded = false, FailureReason = $"journal recovery failed: {reason.Message}" });
        base.OnRecoveryFailure(reason, message);
    }

    private void OnRegister(RegisterWorker c)
    {
        // Workers may connect before the job is submitted; they get their answer once it is.
        if (_state.Job is null)
        {
            Stash.Stash();
            return;
        }
        var retry = _state.IsMember(c.WorkerId);
        Handle(c,
            onDone: sender =>
            {
                // A new worker was answered when its WorkerJoined was persisted. A retry (possibly from
                // a restarted worker actor) is answered again, with its generation in case that was lost.
                if (!retry) return;
                Track(c.WorkerId, sender);
                sender.Tell(new WorkerRegistered(c.WorkerId, _state.Job));
                if (_state.RankOf(c.WorkerId) is not null) sender.Tell(new GenerationStarted(_state.Generation, _state.Ranks));
            },
            onRefused: (sender, reason) => sender.Tell(new StopWorker(reason)));
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
        var decision = JobDecisions.Decide(_state, command);
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
                break;
            case GenerationStarted g:
                PretrainMetrics.Generation.Set(g.Generation);
                foreach (var rank in g.Ranks)
                    if (_workers.TryGetValue(rank.WorkerId, out var worker)) worker.Tell(g);
                break;
            case StepCommitted s:
                PretrainMetrics.StepsTotal.IncTo(s.Step);
                PretrainMetrics.Loss.Set(s.Loss);
                PretrainMetrics.SamplesPerSecond.Set(s.SamplesPerSecond);
                break;
            case CheckpointRecorded:
                PretrainMetrics.CheckpointsTotal.Inc();
                break;
            case WorkerLost l:
                if (_workers.Remove(l.WorkerId, out var lost)) Context.Unwatch(lost);
                PretrainMetrics.Workers.Set(_state.Workers.Count);
                break;
            case JobFailed f:
                foreach (var worker in _workers.Values) worker.Tell(new StopWorker(f.Reason));
                _observer.OnOutcome(JobOutcome.From(_state));
                break;
            case JobCompleted:
                _observer.OnOutcome(JobOutcome.From(_state));
                break;
        }
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
