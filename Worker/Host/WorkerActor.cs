using Akka.Actor;
using Akka.Event;
using Pretrain.Shared.Messages;

namespace Pretrain.Worker.Host;

/// <summary>
/// The worker's control plane: registers with the coordinator's job actor, waits for its rank in a
/// generation, runs the training session off the mailbox (piped back), and reports progress and the
/// outcome. Every wait is bounded: registration retries until the timeout, then the worker exits
/// naming the coordinator it could not reach.
/// </summary>
public sealed class WorkerActor : ReceiveActor, IWithTimers
{
    sealed record RetryRegistration;
    sealed record RegistrationDeadline;
    sealed record AcknowledgementDeadline;

    readonly WorkerOptions _options;
    readonly ActorSelection _job;
    readonly RegisterWorker _registration;
    readonly RunSession _runSession;
    readonly TaskCompletionSource<int> _exit;
    readonly ILoggingAdapter _log = Context.GetLogger();
    readonly CancellationTokenSource _sessionCancel = new();
    JobSpec? _jobSpec;
    IActorRef? _coordinator;

    public ITimerScheduler Timers { get; set; } = null!;

    public WorkerActor(WorkerOptions options, string jobPath, RegisterWorker registration, RunSession runSession, TaskCompletionSource<int> exit)
    {
        _options = options;
        _job = Context.ActorSelection(jobPath);
        _registration = registration;
        _runSession = runSession;
        _exit = exit;
        Registering();
    }

    public static Props Props(WorkerOptions options, string jobPath, RegisterWorker registration, RunSession runSession, TaskCompletionSource<int> exit) =>
        Akka.Actor.Props.Create(() => new WorkerActor(options, jobPath, registration, runSession, exit));

    protected override void PreStart()
    {
        _job.Tell(_registration);
        Timers.StartPeriodicTimer("retry", new RetryRegistration(), TimeSpan.FromSeconds(1));
        Timers.StartSingleTimer("deadline", new RegistrationDeadline(), _options.Timeout);
    }

    void Registering()
    {
        Receive<RetryRegistration>(_ => _job.Tell(_registration));
        Receive<RegistrationDeadline>(_ => Exit(WorkerExitCodes.CoordinatorUnreachable,
            $"the coordinator at {_job.PathString} did not answer registration within {_options.Timeout.TotalSeconds:0} s"));
        Receive<WorkerRegistered>(r =>
        {
            Timers.Cancel("retry");
            Timers.Cancel("deadline");
            _jobSpec = r.Job;
            _coordinator = Sender;
            Context.Watch(Sender);
            _log.Info("registered as {0} with {1}; waiting for the generation to start", _options.WorkerId, Sender.Path);
            Timers.StartSingleTimer("deadline", new RegistrationDeadline(), _options.Timeout * 4);   // others may still be starting
            Become(Registered);
        });
        ReceiveCommon();
    }

    void Registered()
    {
        Receive<RegistrationDeadline>(_ => Exit(WorkerExitCodes.CoordinatorUnreachable,
            $"no generation started within {(_options.Timeout * 4).TotalSeconds:0} s of registering (fewer workers joined than the job expects?)"));
        Receive<GenerationStarted>(g =>
        {
            Timers.Cancel("deadline");
            var me = g.Ranks.FirstOrDefault(a => a.WorkerId == _options.WorkerId);
            if (me == null) { _log.Warning("generation {0} does not include {1}; waiting", g.Generation, _options.WorkerId); return; }
            _log.Info("generation {0}: rank {1} of {2}", g.Generation, me.Rank, g.Ranks.Count);
            var self = Self;
            _runSession(_jobSpec!, g, me.Rank, p => self.Tell(p), c => self.Tell(c), _sessionCancel.Token).PipeTo(self,
                failure: e => new SessionOutcome.Failed(new ReportFailed(_options.WorkerId, me.Rank, e.ToString())));
            Become(Training);
        });
        ReceiveCommon();
    }

    void Training()
    {
        Receive<ReportProgress>(p => _coordinator?.Tell(p));
        Receive<ReportCheckpoint>(c => _coordinator?.Tell(c));
        Receive<SessionOutcome.Finished>(f => Conclude(f.Report, WorkerExitCodes.Finished, null));
        Receive<SessionOutcome.PeerLost>(p => Conclude(p.Report, WorkerExitCodes.PeerLost,
            $"lost peer rank {p.Report.LostRank} ({p.Report.LostWorkerId}) in generation {p.Report.Generation}: {p.Report.Reason}"));
        Receive<SessionOutcome.Failed>(f => Conclude(f.Report, WorkerExitCodes.Failed, f.Report.Reason));
        Receive<SessionOutcome.Cancelled>(c => Exit(WorkerExitCodes.Stopped, c.Reason));
        ReceiveCommon();
    }

    /// <summary>
    /// Sends the final report and exits once the coordinator has journaled it — or after a bounded
    /// wait when the coordinator is away, so a worker never hangs on its way out.
    /// </summary>
    void Conclude(IPretrainMessage report, int code, string? reason)
    {
        if (reason != null) _log.Error("worker {0}: {1}", _options.WorkerId, reason);
        if (_coordinator == null) { Exit(code, null); return; }
        _coordinator.Tell(report);
        Timers.StartSingleTimer("ack", new AcknowledgementDeadline(), TimeSpan.FromSeconds(10));
        Become(() =>
        {
            Receive<ReportAcknowledged>(_ => Exit(code, null));
            Receive<AcknowledgementDeadline>(_ =>
            {
                _log.Warning("the coordinator did not acknowledge the final report within 10 s; exiting anyway");
                Exit(code, null);
            });
            Receive<StopWorker>(_ => { });            // the job is over anyway: keep our own exit code
            Receive<Terminated>(_ => Exit(code, null));
        });
    }

    void ReceiveCommon()
    {
        Receive<StopWorker>(s =>
        {
            _sessionCancel.Cancel();
            Exit(WorkerExitCodes.Stopped, "stopped by the coordinator: " + s.Reason);
        });
        // Training goes on while the coordinator is away (brief, principle 2); only log it.
        Receive<Terminated>(t => _log.Warning("lost the coordinator {0}; training continues", t.ActorRef.Path));
    }

    void Exit(int code, string? reason)
    {
        if (reason != null) _log.Error("worker {0} stops: {1}", _options.WorkerId, reason);
        _exit.TrySetResult(code);
    }

    protected override void PostStop() => _sessionCancel.Cancel();
}
