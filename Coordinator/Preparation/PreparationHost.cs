using System.IO.Hashing;
using System.Text;
using Akka.Actor;
using Pretrain.Coordinator.Actors;
using Pretrain.Coordinator.State;
using Pretrain.Data.Preparation;
using Pretrain.Shared.Cluster;

namespace Pretrain.Coordinator.Preparation;

/// <summary>
/// A coordinator node preparing one corpus: the persistent <see cref="PreparationActor"/> at
/// <c>/user/prepare</c>, its progress as an event and its outcome as a task. Workers started with
/// <c>pretrain worker --prepare</c> join it and take tasks; without them the coordinator runs every task.
/// </summary>
public sealed class PreparationHost : IAsyncDisposable
{
    private readonly Observer _observer = new();
    private readonly TimeSpan _timeout;

    private PreparationHost(ActorSystem system, int port, TimeSpan timeout, Func<Observer, IActorRef> create)
    {
        System = system;
        Port = port;
        _timeout = timeout;
        _ = system.WhenTerminated.ContinueWith(_ => _observer.Outcome.TrySetException(
            new InvalidOperationException("The coordinator stopped before the preparation finished.")), TaskScheduler.Default);
        Actor = create(_observer);
    }

    public ActorSystem System { get; }
    public IActorRef Actor { get; }

    /// <summary>The bound Akka port: workers join with <c>--coordinator HOST:PORT</c>.</summary>
    public int Port { get; }

    /// <summary>Completes when every task is done and the index written, or when the preparation fails.</summary>
    public Task<PreparationOutcome> Outcome => _observer.Outcome.Task;

    /// <summary>Completes once journal and disk agree, with what earlier runs already finished.</summary>
    public Task<PreparationProgress> Resumed => _observer.Resumed.Task;

    /// <summary>Raised on the actor's thread after each completed task: handlers must be quick.</summary>
    public event Action<PreparationProgress>? Progress
    {
        add => _observer.Progress += value;
        remove => _observer.Progress -= value;
    }

    /// <summary>
    /// The persistence id of a preparation: derived from its output folder, so a re-run into the same
    /// folder resumes it and two preparations can share one (PostgreSQL) journal.
    /// </summary>
    public static string PersistenceId(string outputDirectory)
    {
        var path = Path.TrimEndingDirectorySeparator(Path.GetFullPath(outputDirectory));
        return "prepare-" + Convert.ToHexStringLower(XxHash64.Hash(Encoding.UTF8.GetBytes(path)));
    }

    public static async Task<PreparationHost> StartAsync(CoordinatorOptions options, string outputDirectory, CancellationToken ct = default)
    {
        var (system, port) = await CoordinatorNode.StartAsync(options, ct);
        var id = PersistenceId(outputDirectory);
        return new PreparationHost(system, port, options.Timeout,
            observer => system.ActorOf(PreparationActor.Props(id, observer, options.Secret), ClusterHocon.PreparationActorName));
    }

    /// <summary>Starts (or resumes) the plan; throws <see cref="InvalidOperationException"/> if the journal holds another preparation.</summary>
    public async Task StartAsync(PrepareSpec spec, IPreparationPlan plan, CancellationToken ct = default)
    {
        var answer = await Actor.Ask<PreparationStartAnswered>(new StartPreparation(spec.ToWire(), plan), _timeout, ct);
        if (!answer.Accepted) throw new InvalidOperationException($"The preparation was refused: {answer.Reason}");
    }

    public Task<PreparationState> FetchStateAsync(CancellationToken ct = default) =>
        Actor.Ask<PreparationState>(FetchPreparationState.Instance, _timeout, ct);

    public async ValueTask DisposeAsync() => await CoordinatorNode.StopAsync(System);

    /// <summary>Bridges the actor's callbacks to tasks and an event without blocking the actor.</summary>
    private sealed class Observer : IPreparationObserver
    {
        public readonly TaskCompletionSource<PreparationOutcome> Outcome = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public readonly TaskCompletionSource<PreparationProgress> Resumed = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public event Action<PreparationProgress>? Progress;

        public void OnResumed(PreparationProgress progress) => Resumed.TrySetResult(progress);

        public void OnProgress(PreparationProgress progress)
        {
            try { Progress?.Invoke(progress); }
            catch (Exception) { } // a failing display must not fail the preparation; the completion is journaled
        }

        public void OnOutcome(PreparationOutcome outcome) => Outcome.TrySetResult(outcome);
    }
}
