using Akka.Actor;
using Pretrain.Shared.Messages;

namespace Pretrain.Worker.Host;

/// <summary>
/// What a worker process knows of its job across the cluster nodes it builds. A worker outlives its
/// coordinator (brief, principle 2): when the coordinator goes, the split-brain resolver downs the
/// worker's node and a fresh one joins when the coordinator is back (see <see cref="WorkerProcess"/>),
/// while training goes on on the data plane. Each node's <see cref="WorkerActor"/> is rebuilt from this:
/// the registration (same incarnation, so a restarted coordinator takes it as a retry, not a new process),
/// the job, the generation and whether it still trains, the report that closed a generation until a
/// coordinator has it, and the newest checkpoint (re-sent, so a restarted coordinator records it).
/// </summary>
/// <remarks>
/// Fields are written by the attached actor (one at a time) and read by the process loop between
/// nodes; <see cref="Post"/> is called from training threads. One lock covers the hand-over.
/// </remarks>
public sealed class WorkerMemory(RegisterWorker registration)
{
    readonly Lock _gate = new();
    readonly Queue<object> _queued = new();
    IActorRef? _actor;
    ReportCheckpoint? _lastCheckpoint;
    GenerationEnded? _outcome;

    /// <summary>The registration this process sends to every coordinator it meets; its incarnation never changes.</summary>
    public RegisterWorker Registration { get; } = registration;

    public JobSpec? Job { get; set; }

    /// <summary>The newest generation this worker took part in (0 before the first).</summary>
    public long Generation { get; set; }

    /// <summary>
    /// A generation's training task runs (it may go on while no coordinator is reachable). Cleared by the
    /// task's own completion too: with no actor attached, the process's watchdog must see it has stopped.
    /// </summary>
    public bool Training { get => _training; set => _training = value; }
    volatile bool _training;

    /// <summary>Cancels the running generation (abandoned by the coordinator, or this worker was counted as lost).</summary>
    public CancellationTokenSource GenerationCancel { get; set; } = new();

    /// <summary>
    /// The report that closed the newest generation (a lost peer, a boundary, the final figures, a
    /// failure), until a coordinator has journaled it or a newer generation makes it moot; with the exit
    /// code that follows it when it is final (null: the worker waits for the next generation).
    /// </summary>
    public (IPretrainMessage Report, int? ExitCode)? Pending { get; set; }

    /// <summary>
    /// Outcomes of generations up to this one are dropped: this worker was counted as lost in it while it
    /// lived (frozen, cut off) and registers again as a newcomer.
    /// </summary>
    public long DiscardedUpTo { get; set; }

    /// <summary>Set by SIGTERM / Ctrl+C: leave after the step in flight.</summary>
    public bool Leaving { get; set; }

    /// <summary>When this worker last had a registered coordinator (or started); null while it has one.</summary>
    public DateTime? DisconnectedSince { get; private set; } = DateTime.UtcNow;

    /// <summary>A node's actor is attached (it may not be registered yet).</summary>
    public bool Attached { get { lock (_gate) return _actor != null; } }

    public ReportCheckpoint? LastCheckpoint { get { lock (_gate) return _lastCheckpoint; } }

    /// <summary>
    /// A message for the current node's actor, from a training thread or a signal. Without one (between
    /// nodes) a stop request waits for the next actor; progress is dropped (the next report supersedes
    /// it), and a checkpoint is remembered and re-sent on registration.
    /// </summary>
    public void Post(object message)
    {
        lock (_gate)
        {
            if (message is ReportCheckpoint c) _lastCheckpoint = c;
            if (_actor is { } actor) actor.Tell(message);
            else if (message is not (ReportProgress or ReportCheckpoint)) _queued.Enqueue(message);
        }
    }

    /// <summary>
    /// How a generation ended, from its task. Kept until an actor has taken it (<see cref="Took"/>): an
    /// actor whose node is removed may die with it in its mailbox, and the next actor gets it again.
    /// </summary>
    public void Complete(GenerationEnded outcome)
    {
        lock (_gate)
        {
            _outcome = outcome;
            if (outcome.Generation == Generation) Training = false;
            _actor?.Tell(outcome);
        }
    }

    /// <summary>How the newest generation ended, when no actor has taken it yet (none was attached).</summary>
    public GenerationEnded? Untaken { get { lock (_gate) return _outcome; } }

    /// <summary>The actor has acted on <paramref name="outcome"/> (recorded it in <see cref="Pending"/> or exited).</summary>
    public void Took(GenerationEnded outcome)
    {
        lock (_gate) if (ReferenceEquals(_outcome, outcome)) _outcome = null;
    }

    /// <summary>Called by a node's actor as it starts: what waited for an actor is delivered to it, in order.</summary>
    public void Attach(IActorRef actor)
    {
        lock (_gate)
        {
            _actor = actor;
            if (_outcome is { } outcome) actor.Tell(outcome);
            while (_queued.TryDequeue(out var message)) actor.Tell(message);
        }
    }

    public void Detach(IActorRef actor)
    {
        lock (_gate)
        {
            if (!actor.Equals(_actor)) return;
            _actor = null;
            DisconnectedSince ??= DateTime.UtcNow;
        }
    }

    /// <summary>A coordinator answered this worker's registration.</summary>
    public void Connected()
    {
        lock (_gate) DisconnectedSince = null;
    }

    /// <summary>The actor lost its coordinator (its node stays up for now).</summary>
    public void Disconnected()
    {
        lock (_gate) DisconnectedSince ??= DateTime.UtcNow;
    }

    /// <summary>What this worker holds, for a registration: the generation it trained in last and the step of its replica.</summary>
    public RegisterWorker RegistrationHolding(long heldStep) => Registration with { Generation = Generation, HeldStep = heldStep };
}

/// <summary>How generation <paramref name="Generation"/> ended: its task's outcome, for the worker actor.</summary>
public sealed record GenerationEnded(long Generation, SessionOutcome Outcome);
