using Akka.Actor;
using Microsoft.Data.Sqlite;
using Pretrain.Coordinator;
using Pretrain.Coordinator.Preparation;
using Pretrain.Data.Preparation;
using Pretrain.Shared.Messages;
using Xunit;

namespace Pretrain.Tests.Preparation;

/// <summary>The preparation actor on a real coordinator node and SQLite journal, with <see cref="PatternPlan"/>.</summary>
public sealed class PreparationActorTests : IDisposable
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);
    private readonly string _root = Directory.CreateTempSubdirectory("pretrain-prep-").FullName;
    private string Output => Path.Combine(_root, "out");
    private string Journal => Path.Combine(Output, "journal.db");

    public void Dispose()
    {
        SqliteConnection.ClearAllPools();
        try { Directory.Delete(_root, recursive: true); } catch (IOException) { }
    }

    private PrepareSpec Spec(int inputs) =>
        new(PatternPlan.Kind, [PatternPlan.WriteInputs(Path.Combine(_root, "in"), inputs)], Output);

    private Task<PreparationHost> StartHostAsync() =>
        PreparationHost.StartAsync(new CoordinatorOptions { RunDirectory = Output, Timeout = Timeout, Secret = _secret }, Output);

    private readonly Pretrain.Shared.Security.JobSecret _secret = Pretrain.Shared.Security.JobSecret.Random();

    private List<IPreparationEvent> JournaledEvents() => PreparationJournal.Read(Journal, PreparationHost.PersistenceId(Output));

    [Fact]
    public async Task Without_workers_the_coordinator_does_every_task_exactly_once_and_writes_the_index()
    {
        var spec = Spec(6);
        var plan = new PatternPlan(spec, TimeSpan.Zero);
        await using (var host = await StartHostAsync())
        {
            await host.StartAsync(spec, plan);
            var outcome = await host.Outcome.WaitAsync(Timeout);
            Assert.True(outcome.Succeeded, outcome.FailureReason);
            Assert.Equal((6, 0), (outcome.Tasks, outcome.Skipped));
        }
        Assert.All(plan.Tasks, t => Assert.Equal(1, plan.Runs.GetValueOrDefault(t.Id)));
        Assert.All(plan.Tasks, t => Assert.True(plan.IsDone(t), t.Id));
        Assert.Equal(1, plan.Finishes);
        var events = JournaledEvents();
        Assert.Equal(6, events.OfType<PreparationTaskCompleted>().Count());
        Assert.Empty(PreparationJournal.CompletedTwice(events));
        Assert.IsType<PreparationFinished>(events[^1]);
    }

    [Fact]
    public async Task A_restarted_coordinator_resumes_from_the_journal_without_redoing_completed_tasks()
    {
        var spec = Spec(8);
        var first = new PatternPlan(spec, TimeSpan.FromMilliseconds(250));
        await using (var host = await StartHostAsync())
        {
            var threeDone = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            host.Progress += p => { if (p.TasksDone >= 3) threeDone.TrySetResult(); };
            await host.StartAsync(spec, first);
            await threeDone.Task.WaitAsync(Timeout);
        }   // stopped half way, a task in flight
        var completedBefore = JournaledEvents().OfType<PreparationTaskCompleted>().Select(c => c.TaskId).ToHashSet();
        Assert.InRange(completedBefore.Count, 3, 7);

        var second = new PatternPlan(spec, TimeSpan.Zero);
        await using (var host = await StartHostAsync())
        {
            await host.StartAsync(spec, second);
            var outcome = await host.Outcome.WaitAsync(Timeout);
            Assert.True(outcome.Succeeded, outcome.FailureReason);
            Assert.True(outcome.Skipped >= completedBefore.Count, $"skipped {outcome.Skipped}, journaled before {completedBefore.Count}");
        }
        Assert.All(completedBefore, id => Assert.False(second.Runs.ContainsKey(id), $"{id} was completed before the restart and ran again"));
        Assert.All(second.Tasks, t => Assert.True(second.IsDone(t), t.Id));
        var events = JournaledEvents();
        Assert.Empty(PreparationJournal.CompletedTwice(events));
        Assert.Equal(8, events.OfType<PreparationTaskCompleted>().Select(c => c.TaskId).Distinct().Count());
        Assert.Single(events.OfType<PreparationFinished>());
    }

    [Fact]
    public async Task A_lost_workers_task_is_assigned_again_and_the_coordinator_takes_over()
    {
        var spec = Spec(3);
        var plan = new PatternPlan(spec, TimeSpan.Zero);
        await using (var host = await StartHostAsync())
        {
            var received = new TaskCompletionSource<PreparationTaskAssigned>(TaskCreationOptions.RunContinuationsAsynchronously);
            var secret = _secret;
            var registered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var worker = host.System.ActorOf(Props.Create(() => new SilentWorker(host.Actor, received, secret, registered)));
            await registered.Task.WaitAsync(Timeout);   // its registration is in the coordinator's mailbox before the start
            await host.StartAsync(spec, plan);
            var lostTask = await received.Task.WaitAsync(Timeout);
            Assert.Equal(("part-000", 1), (lostTask.TaskId, lostTask.Attempt));
            Assert.Empty(plan.Runs);   // a worker is connected: the coordinator runs nothing itself

            host.System.Stop(worker);
            var outcome = await host.Outcome.WaitAsync(Timeout);
            Assert.True(outcome.Succeeded, outcome.FailureReason);
        }
        var events = JournaledEvents();
        Assert.Contains(events, e => e is PreparerLost { WorkerId: "silent" });
        var redone = events.OfType<PreparationTaskCompleted>().Single(c => c.TaskId == "part-000");
        Assert.Equal(("coordinator", 2), (redone.WorkerId, redone.Attempt));
        Assert.Empty(PreparationJournal.CompletedTwice(events));
    }

    /// <summary>Registers for tasks (proving the secret) and never does one: a worker that dies with its task in flight.</summary>
    private sealed class SilentWorker : ReceiveActor
    {
        public SilentWorker(IActorRef coordinator, TaskCompletionSource<PreparationTaskAssigned> received, Pretrain.Shared.Security.JobSecret secret,
            TaskCompletionSource registered)
        {
            coordinator.Tell(new RequestJoinChallenge("silent", Pretrain.Shared.Security.JoinProof.NewNonce()));
            Receive<JoinChallenge>(c =>
            {
                coordinator.Tell(Pretrain.Shared.Security.JoinProof.Sign(secret, new RegisterPreparer("silent", 1), c));
                registered.TrySetResult();
            });
            Receive<PreparerRegistered>(_ => { });
            Receive<PreparationTaskAssigned>(a => received.TrySetResult(a));
        }
    }
}
