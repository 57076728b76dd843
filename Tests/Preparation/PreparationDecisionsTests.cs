using Pretrain.Coordinator.State;
using Pretrain.Shared.Messages;
using Xunit;
using static Pretrain.Coordinator.State.PreparationDecisions;

namespace Pretrain.Tests.Preparation;

/// <summary>The preparation's decisions, pure: no ActorSystem, no disk.</summary>
public sealed class PreparationDecisionsTests
{
    private static readonly PreparationSpec Spec = new("text", ["/in"], "/out", "byte", false, null, 0.01, 1 << 20, 0);
    private static readonly string[] Tasks = ["t0", "t1", "t2"];

    private static PreparationState Defined() => Apply(PreparationState.Empty, Define(PreparationState.Empty, Spec, Tasks));

    private static PreparationState Apply(PreparationState state, PreparationDecision decision)
    {
        Assert.Null(decision.Refusal);
        return state.ApplyAll(decision.Events);
    }

    private static ReportTaskCompleted Report(PreparationTaskAssigned a) => new(a.TaskId, a.WorkerId, a.Attempt, 100);

    [Fact]
    public void Without_workers_the_coordinator_takes_one_task_at_a_time_in_plan_order()
    {
        var state = Defined();
        var first = Assert.Single(Assign(state, []).Events.Cast<PreparationTaskAssigned>());
        Assert.Equal(("t0", PreparationState.Coordinator, 1), (first.TaskId, first.WorkerId, first.Attempt));
        state = state.Apply(first);
        Assert.Empty(Assign(state, []).Events);   // busy until t0 is reported
    }

    [Fact]
    public void Each_idle_worker_gets_a_different_pending_task_and_the_coordinator_none()
    {
        var assigned = Assign(Defined(), ["w0", "w1"]).Events.Cast<PreparationTaskAssigned>().ToList();
        Assert.Equal([("t0", "w0"), ("t1", "w1")], assigned.Select(a => (a.TaskId, a.WorkerId)));
    }

    [Fact]
    public void A_completed_task_is_never_assigned_or_completed_again()
    {
        var state = Defined();
        var a = (PreparationTaskAssigned)Assign(state, ["w0"]).Events.Single();
        state = state.Apply(a);
        state = Apply(state, Complete(state, Report(a)));
        Assert.Empty(Complete(state, Report(a)).Events);                       // a duplicate report
        Assert.Empty(Complete(state, Report(a) with { WorkerId = "w1" }).Events); // a late one from elsewhere
        Assert.DoesNotContain("t0", Assign(state, ["w0", "w1", "w2"]).Events.Cast<PreparationTaskAssigned>().Select(x => x.TaskId));
    }

    [Fact]
    public void A_lost_workers_task_goes_to_the_next_assignment_with_a_new_attempt()
    {
        var state = Defined();
        var a = (PreparationTaskAssigned)Assign(state, ["w0"]).Events.Single();
        state = Apply(state.Apply(a), Lose(state.Apply(a), "w0", "unreachable"));
        var again = (PreparationTaskAssigned)Assign(state, []).Events.Single();
        Assert.Equal(("t0", PreparationState.Coordinator, 2), (again.TaskId, again.WorkerId, again.Attempt));
        Assert.Empty(Lose(state, "w-idle", "left").Events);   // nothing in flight: nothing to record
    }

    [Fact]
    public void After_a_restart_assigned_but_unfinished_tasks_are_pending_again()
    {
        var state = Defined();
        foreach (var e in Assign(state, ["w0", "w1"]).Events) state = state.Apply(e);
        state = Apply(state, Complete(state, new ReportTaskCompleted("t0", "w0", 1, 100)));
        var recovered = state.Recovered();
        Assert.Equal(["t1", "t2"], recovered.Pending);
        Assert.Equal(["t0"], recovered.Completed.Keys);
    }

    [Fact]
    public void Verification_redoes_what_no_longer_verifies_and_records_what_was_written_but_not_journaled()
    {
        var state = Defined();
        state = state.Apply(new PreparationTaskCompleted("t0", "w0", 1, 100));
        var events = Verify(state, [new TaskOnDisk("t0", 100, false), new TaskOnDisk("t1", 50, true), new TaskOnDisk("t2", 70, false)]).Events;
        Assert.Equal("t0", Assert.IsType<PreparationTaskInvalidated>(events[0]).TaskId);
        Assert.Equal(("t1", PreparationState.FoundOnDisk), (Assert.IsType<PreparationTaskCompleted>(events[1]).TaskId, ((PreparationTaskCompleted)events[1]).WorkerId));
        state = state.ApplyAll(events);
        Assert.Equal(["t0", "t2"], state.Pending);
        Assert.Equal(50, state.CompletedBytes);
    }

    [Fact]
    public void The_same_spec_resumes_and_another_spec_or_plan_is_refused()
    {
        var state = Defined();
        Assert.Empty(Define(state, Spec with { Inputs = ["/in"] }, Tasks).Events);
        Assert.NotNull(Define(state, Spec with { Tokenizer = "cl100k_base" }, Tasks).Refusal);
        Assert.Contains("inputs changed", Define(state, Spec, ["t0", "t1"]).Refusal);
    }

    [Fact]
    public void Finished_only_once_every_task_completed()
    {
        var state = Defined();
        Assert.Empty(Finish(state).Events);
        foreach (var id in Tasks) state = state.Apply(new PreparationTaskCompleted(id, "w0", 1, 10));
        var finished = Assert.IsType<PreparationFinished>(Finish(state).Events.Single());
        Assert.Equal((3, 30L), (finished.Tasks, finished.Bytes));
        Assert.Empty(Finish(state.Apply(finished)).Events);
        Assert.Empty(Assign(state.Apply(finished), []).Events);
    }
}
