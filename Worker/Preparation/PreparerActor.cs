using Akka.Actor;
using Akka.Event;
using Pretrain.Data.Preparation;
using Pretrain.Shared.Messages;
using Pretrain.Shared.Security;
using Pretrain.Worker.Host;

namespace Pretrain.Worker.Preparation;

/// <summary>
/// A worker's side of `pretrain prepare`: registers with the coordinator's preparation actor, builds
/// the same plan from the spec it is sent, runs each assigned task off the mailbox (piped back) and
/// reports it. Bounded: registration retries until the timeout; losing the coordinator ends the worker.
/// </summary>
public sealed class PreparerActor : ReceiveActor, IWithTimers, IWithUnboundedStash
{
    sealed record RetryRegistration;
    sealed record RegistrationDeadline;
    sealed record PlanReady(IPreparationPlan Plan);

    readonly WorkerOptions _options;
    readonly ActorSelection _coordinatorPath;
    readonly Func<PrepareSpec, IPreparationPlan> _plans;
    readonly TaskCompletionSource<int> _exit;
    readonly ILoggingAdapter _log = Context.GetLogger();
    readonly CancellationTokenSource _stopping = new();
    IActorRef _coordinator = ActorRefs.Nobody;
    IPreparationPlan? _plan;
    readonly JoinClient _join;

    public ITimerScheduler Timers { get; set; } = null!;
    public IStash Stash { get; set; } = null!;

    public PreparerActor(WorkerOptions options, string preparationPath, Func<PrepareSpec, IPreparationPlan> plans, TaskCompletionSource<int> exit)
    {
        _options = options;
        _coordinatorPath = Context.ActorSelection(preparationPath);
        _plans = plans;
        _exit = exit;
        _join = new JoinClient(options.Secret, options.WorkerId);

        Receive<RetryRegistration>(_ => Register());
        Receive<JoinChallenge>(c =>
        {
            if (_join.Secret is not { } secret) return;
            _join.Check(c, Sender.Path.Address.ToString());
            _coordinatorPath.Tell(JoinProof.Sign(secret, new RegisterPreparer(_options.WorkerId, Environment.ProcessId), c));
        });
        Receive<RegistrationRefused>(r => Exit(WorkerExitCodes.Refused, $"the coordinator at {Sender.Path.Address} refused the registration: {_join.Explain(r.Reason)}"));
        Receive<RegistrationDeadline>(_ => Exit(WorkerExitCodes.CoordinatorUnreachable,
            $"the coordinator at {_coordinatorPath.PathString} did not answer within {_options.Timeout.TotalSeconds:0} s"));
        Receive<PreparerRegistered>(OnRegistered);
        Receive<PlanReady>(p =>
        {
            _plan = p.Plan;
            Stash.UnstashAll();
        });
        Receive<Status.Failure>(f => Exit(WorkerExitCodes.Failed, "could not plan the preparation: " + f.Cause.GetBaseException().Message));
        Receive<PreparationTaskAssigned>(OnAssigned);
        Receive<ReportTaskCompleted>(c => _coordinator.Tell(c));
        Receive<ReportTaskFailed>(f => _coordinator.Tell(f));
        Receive<StopWorker>(s => Exit(s.Reason == PreparationStopReasons.Finished ? WorkerExitCodes.Finished : WorkerExitCodes.Stopped, s.Reason));
        Receive<Terminated>(_ => Exit(WorkerExitCodes.Stopped, "lost the coordinator; a re-run of `pretrain prepare` hands out what is left"));
    }

    public static Props Props(WorkerOptions options, string preparationPath, Func<PrepareSpec, IPreparationPlan> plans, TaskCompletionSource<int> exit) =>
        Akka.Actor.Props.Create(() => new PreparerActor(options, preparationPath, plans, exit));

    protected override void PreStart()
    {
        Register();
        Timers.StartPeriodicTimer("retry", new RetryRegistration(), TimeSpan.FromSeconds(1));
        Timers.StartSingleTimer("deadline", new RegistrationDeadline(), _options.Timeout);
    }

    /// <summary>A challenge request (the registration follows the coordinator's answer), or an unproven registration without a secret.</summary>
    void Register()
    {
        if (_join.Request() is { } request) _coordinatorPath.Tell(request);
        else _coordinatorPath.Tell(new RegisterPreparer(_options.WorkerId, Environment.ProcessId));
    }

    void OnRegistered(PreparerRegistered r)
    {
        if (_join.UnprovenCoordinator is { } impostor)
        {
            Exit(WorkerExitCodes.Refused, impostor);
            return;
        }
        Timers.CancelAll();
        if (!_coordinator.IsNobody()) return;   // the answer to a retried registration
        _coordinator = Sender;
        Context.Watch(Sender);
        _log.Info("registered as {0} for {1} preparation into {2}", _options.WorkerId, r.Spec.Kind, r.Spec.Output);
        // Planning may scan the inputs: never on the mailbox.
        var spec = r.Spec.ToPrepareSpec();
        Task.Run(() => new PlanReady(_plans(spec))).PipeTo(Self);
    }

    void OnAssigned(PreparationTaskAssigned a)
    {
        if (_plan is null) { Stash.Stash(); return; }
        var task = _plan.Tasks.FirstOrDefault(t => t.Id == a.TaskId);
        if (task is null)
        {
            _coordinator.Tell(new ReportTaskFailed(a.TaskId, _options.WorkerId, "this worker's plan has no such task (do coordinator and worker see the same inputs?)"));
            return;
        }
        var plan = _plan;
        var id = _options.WorkerId;
        var ct = _stopping.Token;
        Task.Run(() => { plan.Run(task, null, ct); return (object)new ReportTaskCompleted(a.TaskId, id, a.Attempt, task.Bytes); }, ct)
            .PipeTo(Self, failure: e => new ReportTaskFailed(a.TaskId, id, e.GetBaseException().Message));
    }

    void Exit(int code, string reason)
    {
        if (code != WorkerExitCodes.Finished) _log.Error("{0} stops: {1}", _options.WorkerId, reason);
        _stopping.Cancel();
        _exit.TrySetResult(code);
    }

    protected override void PostStop() => _stopping.Cancel();
}
