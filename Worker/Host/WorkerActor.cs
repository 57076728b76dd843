using Akka.Actor;
using Akka.Event;
using Pretrain.Shared.Messages;

namespace Pretrain.Worker.Host;

/// <summary>
/// The worker's control plane: registers with the coordinator's job actor, waits for its rank in a
/// generation, runs each generation off the mailbox (piped back), and reports progress and how the
/// generation ended. A lost peer or an agreed step boundary is not the end: the worker reports the step
/// its replica holds and waits for the next generation (elastic training). Every wait is bounded:
/// registration retries until the timeout, a wait for a generation ends after <c>elastic.wait</c> plus
/// the timeout, and the worker exits naming what it waited for.
/// </summary>
public sealed class WorkerActor : ReceiveActor, IWithTimers
{
    sealed record RetryRegistration;
    sealed record WaitDeadline(string What);
    sealed record AcknowledgementDeadline;
    sealed record LeaveDeadline;

    /// <summary>Sent by the process on SIGTERM / Ctrl+C: finish the step in flight, tell the coordinator, exit 0.</summary>
    public sealed record LeaveJob(string Reason);

    readonly WorkerOptions _options;
    readonly ActorSelection _job;
    readonly RegisterWorker _registration;
    readonly RunGeneration _runGeneration;
    readonly Func<long> _heldStep;
    readonly Action<string> _leave, _stopAtBoundary;
    readonly TaskCompletionSource<int> _exit;
    readonly ILoggingAdapter _log = Context.GetLogger();
    CancellationTokenSource _generationCancel = new();
    JobSpec? _jobSpec;
    IActorRef? _coordinator;
    long _generation;
    bool _leaving;

    public ITimerScheduler Timers { get; set; } = null!;

    public WorkerActor(WorkerOptions options, string jobPath, RegisterWorker registration, WorkerSessionHooks hooks, TaskCompletionSource<int> exit)
    {
        _options = options;
        _job = Context.ActorSelection(jobPath);
        _registration = registration;
        (_runGeneration, _heldStep, _leave, _stopAtBoundary) = (hooks.Run, hooks.HeldStep, hooks.Leave, hooks.StopAtBoundary);
        _exit = exit;
        Registering();
    }

    public static Props Props(WorkerOptions options, string jobPath, RegisterWorker registration, WorkerSessionHooks hooks, TaskCompletionSource<int> exit) =>
        Akka.Actor.Props.Create(() => new WorkerActor(options, jobPath, registration, hooks, exit));

    /// <summary>How long a registered worker waits for a generation: the first rendezvous, or a regroup that may wait elastic.wait for newcomers.</summary>
    TimeSpan GenerationWait => TimeSpan.FromSeconds(Math.Max(_options.Timeout.TotalSeconds * 4,
        (_jobSpec?.ElasticWaitSeconds ?? 0) + 2 * _options.Timeout.TotalSeconds));

    protected override void PreStart()
    {
        _job.Tell(_registration);
        Timers.StartPeriodicTimer("retry", new RetryRegistration(), TimeSpan.FromSeconds(1));
        Timers.StartSingleTimer("deadline", new WaitDeadline(
            $"the coordinator at {_job.PathString} did not answer registration within {_options.Timeout.TotalSeconds:0} s"), _options.Timeout);
    }

    void Registering()
    {
        Receive<RetryRegistration>(_ => _job.Tell(_registration));
        Receive<WaitDeadline>(d => Exit(WorkerExitCodes.CoordinatorUnreachable, d.What));
        Receive<WorkerRegistered>(r =>
        {
            Timers.Cancel("retry");
            _jobSpec = r.Job;
            _coordinator = Sender;
            Context.Watch(Sender);
            _log.Info("registered as {0} with {1}; waiting for the generation to start", _options.WorkerId, Sender.Path);
            Waiting($"no generation started within {GenerationWait.TotalSeconds:0} s of registering (fewer workers joined than the job expects?)");
        });
        Receive<LeaveJob>(l => Exit(WorkerExitCodes.Finished, null));   // nothing to hand over yet
        ReceiveCommon();
    }

    /// <summary>Between generations: registered, waiting to be given a rank.</summary>
    void Waiting(string onDeadline)
    {
        Timers.StartSingleTimer("deadline", new WaitDeadline(onDeadline), GenerationWait);
        Become(() =>
        {
            Receive<WaitDeadline>(d => Exit(WorkerExitCodes.PeerLost, d.What));
            Receive<GenerationStarted>(StartGeneration);
            Receive<WorkerRegistered>(_ => { });           // a late answer to a retried registration
            Receive<RequestStepBoundary>(_ => { });         // for a generation already ended
            Receive<AbandonGeneration>(_ => { });
            Receive<LeaveJob>(l =>
            {
                // Not training: tell the coordinator and go; nothing is lost (the replicas of the others hold the state).
                _leaving = true;
                Conclude(new ReportStepBoundary(_options.WorkerId, _generation, _heldStep(), true, l.Reason), WorkerExitCodes.Finished, null);
            });
            ReceiveCommon();
        });
    }

    void StartGeneration(GenerationStarted g)
    {
        var me = g.Ranks.FirstOrDefault(a => a.WorkerId == _options.WorkerId);
        if (me == null) { _log.Info("generation {0} does not include {1}; waiting", g.Generation, _options.WorkerId); return; }
        if (g.Generation <= _generation) { _log.Info("generation {0} is not newer than {1}; ignored", g.Generation, _generation); return; }
        Timers.Cancel("deadline");
        _generation = g.Generation;
        _log.Info("generation {0}: rank {1} of {2} from step {3} (cause: {4})", g.Generation, me.Rank, g.Ranks.Count, g.StartStep, g.Cause);
        _generationCancel = new CancellationTokenSource();
        var self = Self;
        _runGeneration(_jobSpec!, g, me.Rank, p => self.Tell(p), c => self.Tell(c), _generationCancel.Token).PipeTo(self,
            failure: e => new SessionOutcome.Failed(new ReportFailed(_options.WorkerId, me.Rank, e.ToString())));
        Become(Training);
    }

    void Training()
    {
        Receive<ReportProgress>(p => _coordinator?.Tell(p));
        Receive<ReportCheckpoint>(c => _coordinator?.Tell(c));
        Receive<RequestStepBoundary>(r => { if (r.Generation == _generation) _stopAtBoundary(r.Reason); });
        Receive<AbandonGeneration>(a =>
        {
            if (a.Generation != _generation) return;
            _log.Info("the coordinator abandoned generation {0}: {1}", a.Generation, a.Reason);
            _generationCancel.Cancel();
        });
        Receive<LeaveJob>(l =>
        {
            _leaving = true;
            _leave(l.Reason);     // the ring stops after the step in flight; the boundary outcome follows
            Timers.StartSingleTimer("leave", new LeaveDeadline(), _options.Timeout);
        });
        Receive<LeaveDeadline>(_ => Exit(WorkerExitCodes.Stopped, $"the step in flight did not finish within {_options.Timeout.TotalSeconds:0} s of the stop signal"));
        Receive<SessionOutcome.Finished>(f => Conclude(f.Report, WorkerExitCodes.Finished, null));
        Receive<SessionOutcome.PeerLost>(p =>
        {
            _log.Warning("lost peer rank {0} ({1}) in generation {2}; holding step {3}, waiting for the next generation",
                p.Report.LostRank, p.Report.LostWorkerId, p.Report.Generation, p.Report.HeldStep);
            _coordinator?.Tell(p.Report);
            AfterGeneration();
        });
        Receive<SessionOutcome.Boundary>(b =>
        {
            if (b.Report.Leaving || _leaving)
            {
                Conclude(b.Report with { Leaving = true }, WorkerExitCodes.Finished, null);
                return;
            }
            _coordinator?.Tell(b.Report);
            AfterGeneration();
        });
        Receive<SessionOutcome.Failed>(f => Conclude(f.Report, WorkerExitCodes.Failed, f.Report.Reason));
        Receive<SessionOutcome.Cancelled>(c => Exit(WorkerExitCodes.Stopped, c.Reason));
        ReceiveCommon();
    }

    void AfterGeneration()
    {
        Timers.Cancel("leave");
        Waiting($"no new generation started within {GenerationWait.TotalSeconds:0} s of the end of generation {_generation}");
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
        Timers.Cancel("deadline");
        Timers.StartSingleTimer("ack", new AcknowledgementDeadline(), TimeSpan.FromSeconds(10));
        Become(() =>
        {
            Receive<ReportAcknowledged>(_ => Exit(code, null));
            Receive<AcknowledgementDeadline>(_ =>
            {
                _log.Warning("the coordinator did not acknowledge the final report within 10 s; exiting anyway");
                Exit(code, null);
            });
            Receive<StopWorker>(_ => Exit(code, null));    // the job is over anyway: keep our own exit code
            Receive<Terminated>(_ => Exit(code, null));
            ReceiveAny(_ => { });
        });
    }

    void ReceiveCommon()
    {
        Receive<StopWorker>(s =>
        {
            _generationCancel.Cancel();
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

    protected override void PostStop() => _generationCancel.Cancel();
}

/// <summary>What the worker actor needs of the training session: run a generation, the step held, and the step-boundary votes.</summary>
public sealed record WorkerSessionHooks(RunGeneration Run, Func<long> HeldStep, Action<string> Leave, Action<string> StopAtBoundary);
