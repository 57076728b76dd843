using Pretrain.Coordinator.State;
using Pretrain.Shared.Messages;
using Xunit;
using static Pretrain.Tests.Coordinator.JobStateTests;

namespace Pretrain.Tests.Coordinator;

/// <summary>
/// A coordinator restarted on the journal, decided without an ActorSystem: the same job is accepted
/// whatever --resume says, another is refused naming what differs, the restart is journaled, and the
/// members that do not register again within the window are lost.
/// </summary>
public sealed class RestartDecisionsTests
{
    private const long T0 = 1_764_000_000_000;

    [Fact]
    public void The_same_job_submitted_again_with_resume_is_accepted_as_a_restart()
    {
        var state = Running(2);
        Assert.Same(Decision.None, JobDecisions.Decide(state, new DefineJob(Spec(2) with { Resume = true })));
    }

    [Fact]
    public void Another_job_under_the_same_id_is_refused_naming_every_field_that_differs()
    {
        var state = Running(2);
        var refusal = JobDecisions.Decide(state, new DefineJob(Spec(3) with { MaxSteps = 50, RecipeHash = "other" })).Refusal;
        Assert.NotNull(refusal);
        Assert.Contains("recipe hash: hash → other", refusal);
        Assert.Contains("workers: 2 → 3", refusal);
        Assert.Contains("max steps: 100 → 50", refusal);
        Assert.DoesNotContain("run directory:", refusal);
        Assert.Contains("--job-id", refusal);
    }

    [Fact]
    public void A_restart_is_journaled_for_a_live_job_only()
    {
        var (state, decision) = Run(Running(2), new CoordinatorRestarted(1, 0, T0), T0);
        Assert.IsType<CoordinatorRestarted>(Assert.Single(decision.Events));
        Assert.Equal(1, state.CoordinatorRestarts);
        Assert.Same(Decision.None, JobDecisions.Decide(JobState.Empty, new CoordinatorRestarted(0, 0, T0)));
        var failed = Run(Running(2), new ReportFailed("w0", 0, "boom")).State;
        Assert.Same(Decision.None, JobDecisions.Decide(failed, new CoordinatorRestarted(1, 0, T0)));
    }

    [Fact]
    public void Members_that_registered_again_keep_the_generation_going()
    {
        var state = Run(Running(2), new CoordinatorRestarted(1, 0, T0), T0).State;
        // Both came back (the actor tracked them on their retried registration): nothing changes.
        Assert.Same(Decision.None, JobDecisions.Decide(state, new LoseAbsent(["w0", "w1"], 15), T0 + 15_000));
        Assert.Equal(JobPhase.Running, state.Phase);
    }

    [Fact]
    public void A_member_that_did_not_register_again_within_the_window_is_lost_and_the_others_regroup()
    {
        var state = Run(Running(3), new CoordinatorRestarted(1, 7, T0), T0).State;

        var (next, decision) = Run(state, new LoseAbsent(["w0", "w2"], 15), T0 + 15_000);

        Assert.Equal([typeof(RegroupStarted), typeof(WorkerLost)], decision.Events.Select(e => e.GetType()));
        var lost = (WorkerLost)decision.Events[1];
        Assert.Equal("w1", lost.WorkerId);
        Assert.Contains("did not register again within 15 s of the coordinator's restart", lost.Reason);
        Assert.Equal(JobPhase.Regrouping, next.Phase);
        // The survivors' step reports (answering the abandon the regroup sends) start the next generation.
        next = Run(next, new ReportStepBoundary("w0", 1, 30, false, "abandoned"), T0 + 15_100).State;
        var (after, last) = Run(next, new ReportStepBoundary("w2", 1, 30, false, "abandoned"), T0 + 15_200);
        var g = Assert.IsType<GenerationStarted>(last.Events[^1]);
        Assert.Equal((2L, 30L, RegroupCauses.Lost), (g.Generation, g.StartStep, g.Cause));
        Assert.Equal(["w0", "w2"], g.Ranks.Select(r => r.WorkerId));
        Assert.Equal(JobPhase.Running, after.Phase);
    }

    [Fact]
    public void A_regroup_under_way_when_the_coordinator_died_waits_for_its_members_afresh()
    {
        // w1 was lost and w0 reported; w2 had not reported when the coordinator died, long ago.
        var state = Run(Running(3), new LoseWorker("w1", "its node was removed", "coordinator"), T0).State;
        state = Run(state, new ReportStepBoundary("w0", 1, 12, false, "abandoned"), T0 + 100).State;
        long restart = T0 + 3_600_000;
        state = Run(state, new CoordinatorRestarted(1, 12, restart), restart).State;

        // A tick right after the restart does not count w2 as silent: its timeout runs from the restart.
        var tick = JobDecisions.Decide(state, new RegroupTick(), restart + 1_000);
        Assert.DoesNotContain(tick.Events, e => e is WorkerLost);
        // Past the timeout it does.
        var late = JobDecisions.Decide(state, new RegroupTick(), restart + 31_000);
        Assert.Contains(late.Events, e => e is WorkerLost { WorkerId: "w2" });
    }
}
