using Akka.Actor;
using Akka.Event;
using Pretrain.Shared.Messages;
using Pretrain.Shared.Security;

namespace Pretrain.Worker.Host;

/// <summary>
/// The worker's control plane on one cluster node: registers with the coordinator's job actor, waits
/// for its rank in a generation, starts each generation's training task, and reports progress and how
/// the generation ended. A lost peer or an agreed step boundary is not the end: the worker reports the
/// step its replica holds and waits for the next generation (elastic training).
/// <para>
/// The actor lives only as long as its node: what the worker knows is in <see cref="WorkerMemory"/>,
/// and a worker whose node was removed (the coordinator died, or this worker was cut off) gets a new
/// node and a new actor that registers again with what it holds. The training task is not the actor's:
/// it goes on meanwhile (brief, principle 2), and its outcome waits in the memory for the next actor.
/// </para>
/// Every wait is bounded: the first registration by the timeout, a wait for a generation by
/// <c>elastic.wait</c> plus the timeout, an unacknowledged final report by the timeout while the
/// coordinator is reachable; the process bounds the time without any coordinator (<see cref="WorkerProcess"/>).
/// </summary>
public sealed class WorkerActor : ReceiveActor, IWithTimers, IWithUnboundedStash
{
    sealed record RetryRegistration;
    sealed record WaitDeadline(string What, int Code);
    sealed record AcknowledgementDeadline;
    sealed record LeaveDeadline;
    sealed record RegisterAgain;

    /// <summary>Sent by the process on SIGTERM / Ctrl+C: finish the step in flight, tell the coordinator, exit 0.</summary>
    public sealed record LeaveJob(string Reason);

    /// <summary>How long a worker counted as lost while alive waits for its node to be removed before it registers again itself.</summary>
    static readonly TimeSpan RejoinDelay = TimeSpan.FromSeconds(3);

    readonly WorkerOptions _options;
    readonly ActorSelection _job;
    readonly WorkerMemory _memory;
    readonly WorkerSessionHooks _hooks;
    readonly Func<bool> _coordinatorReachable;
    readonly TaskCompletionSource<int> _exit;
    readonly ILoggingAdapter _log = Context.GetLogger();
    IActorRef? _coordinator;

    public ITimerScheduler Timers { get; set; } = null!;
    public IStash Stash { get; set; } = null!;

    /// <param name="coordinatorReachable">The cluster's word on whether the coordinator's node is reachable now.</param>
    public WorkerActor(WorkerOptions options, string jobPath, WorkerMemory memory, WorkerSessionHooks hooks,
        Func<bool> coordinatorReachable, TaskCompletionSource<int> exit)
    {
        _options = options;
        _job = Context.ActorSelection(jobPath);
        (_memory, _hooks, _coordinatorReachable, _exit) = (memory, hooks, coordinatorReachable, exit);
        _join = new JoinClient(options.Secret, options.WorkerId);
        Registering();
    }

    public static Props Props(WorkerOptions options, string jobPath, WorkerMemory memory, WorkerSessionHooks hooks,
        Func<bool> coordinatorReachable, TaskCompletionSource<int> exit) =>
        Akka.Actor.Props.Create(() => new WorkerActor(options, jobPath, memory, hooks, coordinatorReachable, exit));

    /// <summary>How long a registered worker waits for a generation: the first rendezvous, or a regroup that may wait elastic.wait for newcomers.</summary>
    TimeSpan GenerationWait => TimeSpan.FromSeconds(Math.Max(_options.Timeout.TotalSeconds * 4,
        (_memory.Job?.ElasticWaitSeconds ?? 0) + 2 * _options.Timeout.TotalSeconds));

    protected override void PreStart()
    {
        StartRegistering();
        _memory.Attach(Self);    // after the timers: an outcome that waited for this actor is handled like any other
    }

    protected override void PostStop()
    {
        _memory.Detach(Self);
        // Still refused (its id held by a live process) when its node went away — the coordinator is gone: it never took
        // part, so there is nothing to wait for a next coordinator with.
        if (_memory.Job is null && _refusal is { } refusal && !_exit.Task.IsCompleted)
        {
            _log.Error("{0} stops: the coordinator refused it ({1}) and is gone", _options.WorkerId, refusal);
            _exit.TrySetResult(WorkerExitCodes.Stopped);
        }
    }

    readonly JoinClient _join;
    string? _refusal;       // why the coordinator refuses this worker for now (its id is held), while it asks again

    /// <summary>
    /// Asks the coordinator for a registration challenge (Shared/Security/JoinProof.cs). A worker without a secret
    /// registers unproven at once: the coordinator's refusal then says what is missing, and the worker exits 2.
    /// </summary>
    void AskToRegister()
    {
        if (_join.Request() is { } request) _job.Tell(request);
        else _job.Tell(_memory.RegistrationHolding(_hooks.HeldStep()));
    }

    /// <summary>
    /// Answers a challenge with the signed registration. A coordinator whose own proof does not match this worker's
    /// secret is answered too — so the coordinator logs and counts a worker with a wrong secret — but never trusted:
    /// its refusal, or its acceptance, ends this worker with exit 2.
    /// </summary>
    void OnChallenge(JoinChallenge c)
    {
        if (_join.Secret is not { } secret) return;
        _join.Check(c, Sender.Path.Address.ToString());
        _job.Tell(JoinProof.Sign(secret, _memory.RegistrationHolding(_hooks.HeldStep()), c));
    }

    void OnRefused(RegistrationRefused r)
    {
        string why = _join.Explain(r.Reason);
        if (!r.MayRetry || _join.UnprovenCoordinator is not null)
        {
            Exit(WorkerExitCodes.Refused, $"the coordinator at {Sender.Path.Address} refused the registration: {why}");
            return;
        }
        if (_refusal is null && _memory.Job is null)
            // The id's holder may be a process that just died (a replaced pod): give the failure detector (~5 s) twice the time to say so.
            Timers.StartSingleTimer("registration", new WaitDeadline("", WorkerExitCodes.Stopped),
                TimeSpan.FromSeconds(Math.Max(_options.Timeout.TotalSeconds, 10)));
        if (_refusal != r.Reason) _log.Warning("the coordinator refused the registration for now, asking again every second: {0}", why);
        _refusal = r.Reason;
    }

    void StartRegistering()
    {
        AskToRegister();
        Timers.StartPeriodicTimer("retry", new RetryRegistration(), TimeSpan.FromSeconds(1));
        // The first registration is bounded here; a worker that held a job already is bounded by the
        // process's --coordinator-timeout (it may train on meanwhile).
        if (_memory.Job is null)
            Timers.StartSingleTimer("registration", new WaitDeadline(
                $"the coordinator at {_job.PathString} did not answer registration within {_options.Timeout.TotalSeconds:0} s",
                WorkerExitCodes.CoordinatorUnreachable), _options.Timeout);
    }

    void Registering()
    {
        Receive<RetryRegistration>(_ => AskToRegister());
        Receive<JoinChallenge>(OnChallenge);
        Receive<RegistrationRefused>(OnRefused);
        // A worker still refused when its registration time is up says why: an impostor coordinator (exit 2), or its id
        // held by a live process (exit 4).
        Receive<WaitDeadline>(d =>
        {
            if (_join.UnprovenCoordinator is { } impostor) Exit(WorkerExitCodes.Refused, impostor);
            // Exit 4, not 2: on Kubernetes a replacement pod refused while its predecessor still looks alive is replaced
            // again (podFailurePolicy ignores 4), where 2 would fail the whole Job.
            else if (_refusal is { } refusal) Exit(WorkerExitCodes.Stopped, $"the coordinator still refuses this worker: {refusal}");
            else Exit(d.Code, d.What);
        });
        Receive<WorkerRegistered>(OnRegistered);
        Receive<GenerationEnded>(Ended);     // recorded; reported once registered
        Receive<LeaveJob>(l =>
        {
            if (!_memory.Training) { Exit(WorkerExitCodes.Finished, null); return; }   // nothing to hand over
            _memory.Leaving = true;
            _hooks.Leave(l.Reason);    // the boundary outcome follows and waits for a coordinator (the process bounds that)
        });
        Receive<ReportProgress>(_ => { });   // no coordinator to tell; the next report supersedes it
        Receive<ReportCheckpoint>(_ => { }); // remembered by the memory, re-sent on registration
        // From a coordinator that has this worker's registration but whose answer is still on its way.
        Receive<GenerationStarted>(_ => Stash.Stash());
        Receive<RequestStepBoundary>(_ => Stash.Stash());
        Receive<AbandonGeneration>(_ => Stash.Stash());
        ReceiveCommon();
    }

    void OnRegistered(WorkerRegistered r)
    {
        if (_join.UnprovenCoordinator is { } impostor)
        {
            Exit(WorkerExitCodes.Refused, impostor);    // accepted by a process that could not prove the secret: not ours to train for
            return;
        }
        Timers.Cancel("retry");
        Timers.Cancel("registration");
        Timers.Cancel("deadline");
        _refusal = null;
        if (r.Job.TlsDataPlane && _options.Tls is null)
        {
            Exit(WorkerExitCodes.Refused, "the job's data plane is TLS (the coordinator's --tls-data-plane): start this worker with --tls-cert and --tls-ca");
            return;
        }
        bool again = _memory.Job is not null;
        _memory.Job = r.Job;
        _memory.Connected();
        _coordinator = Sender;
        Context.Watch(Sender);
        if (again)
            _log.Info("registered again as {0} with {1} (generation {2}, holding step {3}{4})", _options.WorkerId, Sender.Path,
                _memory.Generation, _hooks.HeldStep(), _memory.Training ? ", training" : "");
        else
            _log.Info("registered as {0} with {1}; waiting for the generation to start", _options.WorkerId, Sender.Path);
        // A restarted coordinator may have missed the newest checkpoint; it ignores one it has (or an older one),
        // and one that retention has removed since is not offered.
        if (_memory.LastCheckpoint is { } checkpoint && Directory.Exists(checkpoint.Path)) Sender.Tell(checkpoint);
        Stash.UnstashAll();
        if (_memory.Pending is ({ } final, int code)) Conclude(final, code, null);
        else if (_memory.Pending is ({ } report, null))
        {
            Sender.Tell(report);
            Waiting($"no new generation started within {GenerationWait.TotalSeconds:0} s of the end of generation {_memory.Generation}");
        }
        else if (_memory.Training) Become(Training);
        else Waiting($"no generation started within {GenerationWait.TotalSeconds:0} s of registering (fewer workers joined than the job expects?)");
    }

    /// <summary>Between generations: registered, waiting to be given a rank.</summary>
    void Waiting(string onDeadline)
    {
        Timers.StartSingleTimer("deadline", new WaitDeadline(onDeadline, WorkerExitCodes.PeerLost), GenerationWait);
        Become(() =>
        {
            Receive<WaitDeadline>(d => Exit(d.Code, d.What));
            Receive<GenerationStarted>(StartGeneration);
            Receive<GenerationEnded>(Ended);                // of a generation this worker was dropped from
            Receive<WorkerRegistered>(_ => { });           // a late answer to a retried registration
            Receive<RequestStepBoundary>(_ => { });         // for a generation already ended
            Receive<AbandonGeneration>(_ => { });
            Receive<ReportProgress>(_ => { });
            Receive<ReportCheckpoint>(c => _coordinator?.Tell(c));
            Receive<LeaveJob>(l =>
            {
                // Not training: tell the coordinator and go; nothing is lost (the replicas of the others hold the state).
                _memory.Leaving = true;
                Conclude(new ReportStepBoundary(_options.WorkerId, _memory.Generation, _hooks.HeldStep(), true, l.Reason), WorkerExitCodes.Finished, null);
            });
            ReceiveCommon();
        });
    }

    void StartGeneration(GenerationStarted g)
    {
        var me = g.Ranks.FirstOrDefault(a => a.WorkerId == _options.WorkerId);
        if (me == null) { _log.Info("generation {0} does not include {1}; waiting", g.Generation, _options.WorkerId); return; }
        if (g.Generation <= _memory.Generation) { _log.Info("generation {0} is not newer than {1}; ignored", g.Generation, _memory.Generation); return; }
        if (_memory.Training)
        {
            // Still in a generation this worker was dropped from (it rejoined while its old ring had not failed yet):
            // end that one first; this one starts once its outcome is in.
            _memory.DiscardedUpTo = _memory.Generation;
            _memory.GenerationCancel.Cancel();
            Stash.Stash();
            return;
        }
        Timers.Cancel("deadline");
        _memory.Generation = g.Generation;
        _memory.Pending = null;
        _memory.Training = true;
        _memory.GenerationCancel = new CancellationTokenSource();
        _log.Info("generation {0}: rank {1} of {2} from step {3} (cause: {4})", g.Generation, me.Rank, g.Ranks.Count, g.StartStep, g.Cause);
        var (memory, generation, workerId) = (_memory, g.Generation, _options.WorkerId);
        // The task reports to the memory, not to this actor: it may outlive this node (see WorkerProcess).
        _hooks.Run(_memory.Job!, g, me.Rank, memory.Post, memory.Post, _memory.GenerationCancel.Token).ContinueWith(t =>
            memory.Complete(new GenerationEnded(generation, t.IsCompletedSuccessfully ? t.Result
                : new SessionOutcome.Failed(new ReportFailed(workerId, me.Rank, t.Exception?.GetBaseException().Message ?? "the generation's task was cancelled")))),
            TaskScheduler.Default);
        Become(Training);
    }

    void Training()
    {
        Receive<ReportProgress>(p => _coordinator?.Tell(p));
        Receive<ReportCheckpoint>(c => _coordinator?.Tell(c));
        Receive<RequestStepBoundary>(r => { if (r.Generation == _memory.Generation) _hooks.StopAtBoundary(r.Reason); });
        Receive<AbandonGeneration>(a =>
        {
            if (a.Generation != _memory.Generation) return;
            _log.Info("the coordinator abandoned generation {0}: {1}", a.Generation, a.Reason);
            _memory.GenerationCancel.Cancel();
        });
        Receive<GenerationStarted>(StartGeneration);
        Receive<WorkerRegistered>(_ => { });
        Receive<LeaveJob>(l =>
        {
            _memory.Leaving = true;
            _hooks.Leave(l.Reason);     // the ring stops after the step in flight; the boundary outcome follows
            Timers.StartSingleTimer("leave", new LeaveDeadline(), _options.Timeout);
        });
        Receive<LeaveDeadline>(_ => Exit(WorkerExitCodes.Stopped, $"the step in flight did not finish within {_options.Timeout.TotalSeconds:0} s of the stop signal"));
        Receive<GenerationEnded>(Ended);
        ReceiveCommon();
    }

    /// <summary>
    /// A generation's task ended: record how in the memory (it survives this node), then, when a
    /// coordinator is registered, report it and wait for the next generation or conclude.
    /// </summary>
    void Ended(GenerationEnded e)
    {
        if (e.Generation < _memory.Generation)
        {
            // A generation this worker was dropped from, ending after the next one started: nothing to report.
            _memory.Took(e);
            _log.Info("generation {0} ended ({1}) after generation {2} started; ignored", e.Generation, e.Outcome.GetType().Name, _memory.Generation);
            return;
        }
        _memory.Training = false;
        Timers.Cancel("leave");
        if (e.Generation <= _memory.DiscardedUpTo)
        {
            _memory.Took(e);
            _log.Info("generation {0} ended ({1}); it no longer counts (this worker was dropped from it)", e.Generation, e.Outcome.GetType().Name);
            if (_coordinator != null) Waiting($"no generation took this worker within {GenerationWait.TotalSeconds:0} s of registering again");
            Stash.UnstashAll();
            return;
        }
        switch (e.Outcome)
        {
            case SessionOutcome.Finished f:
                Conclude(f.Report, WorkerExitCodes.Finished, null);
                break;
            case SessionOutcome.PeerLost p:
                _log.Warning("lost peer {1} (rank {0}) in generation {2}; holding step {3}, waiting for the next generation",
                    p.Report.LostRank, p.Report.LostWorkerId, p.Report.Generation, p.Report.HeldStep);
                HoldForNextGeneration(p.Report);
                break;
            case SessionOutcome.Boundary b when b.Report.Leaving || _memory.Leaving:
                Conclude(b.Report with { Leaving = true }, WorkerExitCodes.Finished, null);
                break;
            case SessionOutcome.Boundary b:
                HoldForNextGeneration(b.Report);
                break;
            case SessionOutcome.Failed f:
                Conclude(f.Report, WorkerExitCodes.Failed, f.Report.Reason);
                break;
            case SessionOutcome.Cancelled c:
                Exit(WorkerExitCodes.Stopped, c.Reason);
                break;
        }
        _memory.Took(e);
    }

    void HoldForNextGeneration(IPretrainMessage report)
    {
        _memory.Pending = (report, null);
        if (_coordinator == null) return;      // sent when a coordinator answers the registration
        _coordinator.Tell(report);
        Waiting($"no new generation started within {GenerationWait.TotalSeconds:0} s of the end of generation {_memory.Generation}");
    }

    /// <summary>
    /// Sends the final report and exits once the coordinator has journaled it. The report is kept until
    /// then: a coordinator that dies first gets it from the next node's registration. A coordinator that
    /// is reachable but does not answer within the timeout is not waited for any longer.
    /// </summary>
    void Conclude(IPretrainMessage report, int code, string? reason)
    {
        if (reason != null) _log.Error("{0}: {1}", _options.WorkerId, reason);
        _memory.Pending = (report, code);
        if (_coordinator == null) return;      // sent when a coordinator answers the registration
        _coordinator.Tell(report);
        Timers.Cancel("deadline");
        var wait = TimeSpan.FromSeconds(Math.Max(10, _options.Timeout.TotalSeconds));
        Timers.StartSingleTimer("ack", new AcknowledgementDeadline(), wait);
        Become(() =>
        {
            Receive<ReportAcknowledged>(_ => { _memory.Pending = null; Exit(code, null); });
            Receive<AcknowledgementDeadline>(_ =>
            {
                if (!_coordinatorReachable())
                {
                    _log.Warning("the coordinator is unreachable; keeping the final report for the coordinator that comes back");
                    Timers.StartSingleTimer("ack", new AcknowledgementDeadline(), wait);
                    return;
                }
                _log.Warning("the coordinator did not acknowledge the final report within {0:0} s; exiting anyway", wait.TotalSeconds);
                Exit(code, null);
            });
            Receive<StopWorker>(_ => Exit(code, null));    // the job is over anyway: keep our own exit code
            Receive<Terminated>(t =>
            {
                if (!t.AddressTerminated) { Exit(code, null); return; }    // its actor stopped: that coordinator is done with the job
                _coordinator = null;
                _memory.Disconnected();
                _log.Warning("lost the coordinator before it acknowledged the final report; keeping it for the coordinator that comes back");
                Become(Registering);
                StartRegistering();
            });
            ReceiveAny(_ => { });
        });
    }

    void ReceiveCommon()
    {
        Receive<StopWorker>(s =>
        {
            if (s.Rejoin) { Rejoin(s.Reason); return; }
            _memory.GenerationCancel.Cancel();
            if (s.JobCompleted && _memory.Pending is null)
            {
                // Not a failure: the job needs nothing more from this worker (a newcomer or a late replacement). A warning, so
                // it shows without --verbose: the operator should see why a worker that never trained exits 0.
                _log.Warning("{0} exits: {1} without it; nothing is left to do", _options.WorkerId, s.Reason);
                Exit(WorkerExitCodes.Finished, null);
                return;
            }
            if (s.JobFailed)
            {
                // As a worker that failed the job itself, whatever final report it still held (a lost peer's, say): a Kubernetes
                // Job then fails (FailJob) instead of replacing this pod.
                Exit(WorkerExitCodes.Failed, "stopped by the coordinator, which failed the job: " + s.Reason);
                return;
            }
            // A final report still pending (a restarted coordinator found the job over) keeps its own exit code.
            Exit(_memory.Pending is (_, int code) ? code : WorkerExitCodes.Stopped, "stopped by the coordinator: " + s.Reason);
        });
        // Training goes on while the coordinator is away (brief, principle 2): register again, and when
        // its node is gone too (the usual case) the process builds a new node whose actor does.
        Receive<Terminated>(t =>
        {
            if (!t.ActorRef.Equals(_coordinator)) return;
            _coordinator = null;
            _memory.Disconnected();
            _log.Warning("lost the coordinator {0}; {1}registering again until it is back", t.ActorRef.Path,
                _memory.Training ? "training continues, " : "");
            Become(Registering);
            StartRegistering();
        });
    }

    /// <summary>
    /// Counted as lost while alive (frozen and woken, cut off and healed, wrongly blamed): the generation
    /// it was in is gone, so this worker drops it and registers again as a newcomer, to be given the
    /// others' state by broadcast. Its node is usually downed by the coordinator first (then the process
    /// builds a new one); if not, this actor registers again after a short wait.
    /// </summary>
    void Rejoin(string reason)
    {
        _log.Warning("{0}; dropping generation {1} and registering again as a newcomer", reason, _memory.Generation);
        _memory.DiscardedUpTo = _memory.Generation;
        _memory.Pending = null;
        if (_memory.Training) _memory.GenerationCancel.Cancel();
        if (_coordinator != null) Context.Unwatch(_coordinator);
        _coordinator = null;
        _memory.Disconnected();
        Timers.Cancel("deadline");
        Timers.StartSingleTimer("rejoin", new RegisterAgain(), RejoinDelay);
        Become(() =>
        {
            Receive<RegisterAgain>(_ =>
            {
                Become(Registering);
                StartRegistering();
            });
            Receive<GenerationEnded>(Ended);
            Receive<LeaveJob>(_ => Exit(WorkerExitCodes.Finished, null));   // nothing of this worker's is part of the job now
            ReceiveAny(_ => { });
        });
    }

    void Exit(int code, string? reason)
    {
        if (reason != null) _log.Error("{0} stops: {1}", _options.WorkerId, reason);
        _exit.TrySetResult(code);
        Become(() => ReceiveAny(_ => { }));    // the process is on its way out: what its node says while it stops is no news
    }
}

/// <summary>What the worker actor needs of the training session: run a generation, the step held, and the step-boundary votes.</summary>
public sealed record WorkerSessionHooks(RunGeneration Run, Func<long> HeldStep, Action<string> Leave, Action<string> StopAtBoundary);
