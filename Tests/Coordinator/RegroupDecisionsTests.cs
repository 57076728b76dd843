using Pretrain.Coordinator.State;
using Pretrain.Shared.Messages;
using Xunit;
using static Pretrain.Tests.Coordinator.JobStateTests;

namespace Pretrain.Tests.Coordinator;

/// <summary>
/// Elastic regrouping, decided without an ActorSystem: who is lost or leaves, when the survivors have all
/// reported the step they hold, and who forms the next generation from which step and whose state.
/// Generation 1 has workers w0, w1, … at ranks 0, 1, … (<see cref="JobStateTests.Running(JobSpec)"/>).
/// </summary>
public sealed class RegroupDecisionsTests
{
    private const long T0 = 1_764_000_000_000;

    private static JobSpec Elastic(int worldSize, int minWorkers = 1, int maxWorkers = 0, double waitSeconds = 120, double timeoutSeconds = 30) =>
        Spec(worldSize) with { MinWorkers = minWorkers, MaxWorkers = maxWorkers, ElasticWaitSeconds = waitSeconds, TimeoutSeconds = timeoutSeconds };

    /// <summary>The rank's collective failed on generation 1's rank <paramref name="lostRank"/> (worker w{lostRank}).</summary>
    private static ReportPeerLost PeerLost(string reporter, int lostRank, long heldStep, long generation = 1) =>
        new(reporter, generation, lostRank, $"w{lostRank}", "connection reset", heldStep);

    /// <summary>The rank stopped at a step boundary (a newcomer waits, the generation was abandoned) and holds <paramref name="heldStep"/>.</summary>
    private static ReportStepBoundary Boundary(string worker, long heldStep, long generation = 1, int leavers = 0) =>
        new(worker, generation, heldStep, false, "", leavers);

    private static ReportStepBoundary Leaving(string worker, long heldStep, long generation = 1) =>
        new(worker, generation, heldStep, true, "SIGTERM", 1);

    private static LoseWorker Died(string worker, int? processId = null) => new(worker, "its actor stopped", "coordinator", processId);

    private static RegisterWorker Restarted(string worker, int port, string incarnation = "second", int processId = 2) =>
        Register(worker, port) with { Incarnation = incarnation, ProcessId = processId };

    private static ReportProgress Step(string worker, long generation, long step) => new(worker, generation, 0, step, 1.5, 100);

    private static GenerationStarted Started(Decision decision) => Assert.IsType<GenerationStarted>(decision.Events[^1]);

    private static IEnumerable<Type> Kinds(Decision decision) => decision.Events.Select(e => e.GetType());

    // --- A member lost while running ---

    [Fact]
    public void A_peer_lost_report_while_running_starts_a_lost_regroup_holds_the_reporters_step_and_loses_the_peer()
    {
        var (state, decision) = Run(Running(3), PeerLost("w0", 1, 10), T0);

        Assert.Equal([typeof(RegroupStarted), typeof(StepHeld), typeof(WorkerLost)], Kinds(decision));
        var regroup = (RegroupStarted)decision.Events[0];
        Assert.Equal((1L, RegroupCauses.Lost, T0), (regroup.Generation, regroup.Cause, regroup.AtUnixMs));
        Assert.Contains("w1", regroup.Reason);
        Assert.Equal(new StepHeld("w0", 1, 10), decision.Events[1]);
        Assert.Equal(new WorkerLost("w1", 1, "connection reset", "w0"), decision.Events[2]);
        // w2 has not reported yet: no generation.
        Assert.Equal((JobPhase.Regrouping, 1L), (state.Phase, state.Generation));
        Assert.Equal(["w0", "w2"], state.Workers.Select(w => w.WorkerId));
    }

    [Fact]
    public void Survivors_one_step_apart_continue_from_the_higher_step_and_adopt_its_state()
    {
        var state = Run(Running(3), PeerLost("w0", 1, 10), T0).State;

        var (next, decision) = Run(state, PeerLost("w2", 1, 11), T0 + 200);

        Assert.Equal([typeof(StepHeld), typeof(GenerationStarted)], Kinds(decision));
        var g = Started(decision);
        Assert.Equal((2L, 11L, RegroupCauses.Lost), (g.Generation, g.StartStep, g.Cause));
        Assert.Equal(["w0", "w2"], g.Ranks.Select(r => r.WorkerId));
        Assert.Equal([0, 1], g.Ranks.Select(r => r.Rank));
        Assert.Equal([29500, 29502], g.Ranks.Select(r => r.DataPlanePort));
        // w2, now rank 1, holds step 11: everyone adopts its state.
        Assert.Equal(1, g.SourceRank);
        Assert.Equal((JobPhase.Running, 2L), (next.Phase, next.Generation));
        Assert.Equal("w1", Assert.Single(next.Lost).WorkerId);
    }

    [Fact]
    public void Survivors_at_the_same_step_adopt_the_state_of_the_first_rank()
    {
        var state = Run(Running(3), PeerLost("w1", 2, 10), T0).State;

        var g = Started(Run(state, PeerLost("w0", 2, 10), T0).Decision);

        Assert.Equal(["w0", "w1"], g.Ranks.Select(r => r.WorkerId));
        Assert.Equal((10L, 0), (g.StartStep, g.SourceRank));
    }

    [Fact]
    public void Two_workers_lost_at_once_leave_the_survivors_in_their_old_rank_order()
    {
        var state = Run(Running(4), PeerLost("w0", 1, 20), T0).State;

        var (next, decision) = Run(state, PeerLost("w3", 2, 20), T0 + 100);

        Assert.Equal([typeof(StepHeld), typeof(WorkerLost), typeof(GenerationStarted)], Kinds(decision));
        var g = Started(decision);
        Assert.Equal(["w0", "w3"], g.Ranks.Select(r => r.WorkerId));
        Assert.Equal([0, 1], g.Ranks.Select(r => r.Rank));
        Assert.Equal((2L, 20L, 0, RegroupCauses.Lost), (g.Generation, g.StartStep, g.SourceRank, g.Cause));
        Assert.Equal(["w1", "w2"], next.Lost.Select(l => l.WorkerId));
    }

    [Fact]
    public void A_death_watch_loss_while_running_starts_a_lost_regroup_that_the_survivors_step_reports_complete()
    {
        var (state, decision) = Run(Running(3), Died("w1"), T0);

        Assert.Equal([typeof(RegroupStarted), typeof(WorkerLost)], Kinds(decision));
        var regroup = (RegroupStarted)decision.Events[0];
        Assert.Equal((RegroupCauses.Lost, T0), (regroup.Cause, regroup.AtUnixMs));
        Assert.Equal(new WorkerLost("w1", 1, "its actor stopped", "coordinator"), decision.Events[1]);
        Assert.Equal(JobPhase.Regrouping, state.Phase);

        // The survivors answer the AbandonGeneration with a step boundary; that does not turn the regroup into a "joined" one.
        state = Run(state, Boundary("w2", 7), T0 + 50).State;
        var g = Started(Run(state, Boundary("w0", 7), T0 + 60).Decision);
        Assert.Equal(["w0", "w2"], g.Ranks.Select(r => r.WorkerId));
        Assert.Equal((2L, 7L, 0, RegroupCauses.Lost), (g.Generation, g.StartStep, g.SourceRank, g.Cause));
    }

    [Fact]
    public void A_death_watch_report_for_an_earlier_process_of_the_worker_id_is_ignored()
    {
        // The local launcher names the process that exited; the member registered from process id 1.
        Assert.Empty(JobDecisions.Decide(Running(2), Died("w1", processId: 99), T0).Events);
        Assert.Equal(typeof(RegroupStarted), Kinds(JobDecisions.Decide(Running(2), Died("w1", processId: 1), T0)).First());
    }

    [Fact]
    public void A_survivor_that_dies_before_reporting_its_step_is_not_waited_for()
    {
        var state = Run(Running(3), PeerLost("w0", 2, 10), T0).State;

        var (next, decision) = Run(state, Died("w1"), T0 + 300);

        // No second RegroupStarted: the regroup already runs.
        Assert.Equal([typeof(WorkerLost), typeof(GenerationStarted)], Kinds(decision));
        var g = Started(decision);
        Assert.Equal(["w0"], g.Ranks.Select(r => r.WorkerId));
        Assert.Equal((2L, 10L, 0, RegroupCauses.Lost), (g.Generation, g.StartStep, g.SourceRank, g.Cause));
        Assert.Equal(["w2", "w1"], next.Lost.Select(l => l.WorkerId));
    }

    [Fact]
    public void A_peer_blamed_after_it_reported_its_own_step_is_not_counted_lost()
    {
        // w2 is gone; w1 reports it. w0, confused by the broken ring, then blames w1, which is alive and holds its step.
        var state = Run(Running(3), PeerLost("w1", 2, 10), T0).State;

        var (next, decision) = Run(state, PeerLost("w0", 1, 10), T0 + 100);

        Assert.Equal([typeof(StepHeld), typeof(GenerationStarted)], Kinds(decision));
        Assert.Equal(["w0", "w1"], Started(decision).Ranks.Select(r => r.WorkerId));
        Assert.Equal("w2", Assert.Single(next.Lost).WorkerId);
    }

    [Fact]
    public void Losing_every_member_of_the_generation_fails_the_job_naming_the_last_checkpoint()
    {
        var state = Run(Running(2), new ReportCheckpoint("w0", 10, "checkpoints/step-00000010", "c10")).State;
        state = Run(state, Died("w0"), T0).State;

        var (failed, decision) = Run(state, Died("w1"), T0 + 100);

        Assert.Equal([typeof(WorkerLost), typeof(JobFailed)], Kinds(decision));
        Assert.Equal(JobPhase.Failed, failed.Phase);
        Assert.Contains("every worker of generation 1 was lost", failed.FailureReason);
        Assert.Contains("checkpoints/step-00000010 (step 10)", failed.FailureReason);
        Assert.Contains("--resume", failed.FailureReason);
    }

    // --- A blame that rests on a timeout: a suspect, not yet a loss ---

    private static ReportPeerLost TimedOut(string reporter, int lostRank, long heldStep) =>
        new(reporter, 1, lostRank, $"w{lostRank}", "no data for 5.1 s (timeout 5 s)", heldStep, Suspected: true);

    private static long Grace => (long)(JobDecisions.SuspectGraceSeconds * 1000);

    [Fact]
    public void A_rank_blamed_on_a_timeout_that_reports_within_the_grace_stays_in_the_next_generation()
    {
        var (state, first) = Run(Running(3), TimedOut("w0", 1, 10), T0);
        Assert.Equal([typeof(RegroupStarted), typeof(StepHeld), typeof(WorkerSuspected)], Kinds(first));
        Assert.Equal(new WorkerSuspected("w1", 1, "no data for 5.1 s (timeout 5 s)", "w0", T0), first.Events[2]);
        Assert.True(state.IsMember("w1"));

        // w1 was only waiting on the frozen w2; it answers the AbandonGeneration at once.
        state = Run(state, Boundary("w1", 10), T0 + 100).State;
        Assert.Empty(state.Suspects);
        Assert.Empty(JobDecisions.Decide(state, new RegroupTick(), T0 + Grace).Events);
        var g = Started(Run(state, Died("w2"), T0 + Grace + 100).Decision);

        Assert.Equal(["w0", "w1"], g.Ranks.Select(r => r.WorkerId));
        Assert.Equal((2L, 10L, 0), (g.Generation, g.StartStep, g.SourceRank));
    }

    [Fact]
    public void A_suspect_silent_past_the_grace_is_counted_lost_by_its_accuser()
    {
        var state = Run(Running(3), TimedOut("w0", 1, 10), T0).State;
        state = Run(state, Boundary("w2", 10), T0 + 100).State;
        Assert.Empty(JobDecisions.Decide(state, new RegroupTick(), T0 + Grace - 1).Events);

        var (next, decision) = Run(state, new RegroupTick(), T0 + Grace);

        Assert.Equal([typeof(WorkerLost), typeof(GenerationStarted)], Kinds(decision));
        var lost = (WorkerLost)decision.Events[0];
        Assert.Equal(("w1", "w0"), (lost.WorkerId, lost.DetectedBy));
        Assert.Contains("did not report its step", lost.Reason);
        Assert.Equal(["w0", "w2"], Started(decision).Ranks.Select(r => r.WorkerId));
        Assert.Empty(next.Suspects);
    }

    // --- Stale and refused reports ---

    [Fact]
    public void A_report_for_an_older_generation_changes_nothing()
    {
        var state = Run(Run(Running(3), PeerLost("w0", 1, 10), T0).State, PeerLost("w2", 1, 11), T0).State;
        Assert.Equal((JobPhase.Running, 2L), (state.Phase, state.Generation));

        // w0 (rank 0 of generation 2) reports late about generation 1.
        foreach (var late in new object[] { PeerLost("w0", 2, 11, generation: 1), Boundary("w0", 11, generation: 1) })
        {
            var decision = JobDecisions.Decide(state, late, T0 + 1000);
            Assert.Empty(decision.Events);
            Assert.Null(decision.Refusal);
        }
    }

    [Fact]
    public void A_report_from_a_worker_counted_as_lost_is_refused()
    {
        var state = Run(Running(3), PeerLost("w0", 1, 10), T0).State;

        // w1 was only frozen; it wakes and reports, of the very generation it was lost from.
        var decision = JobDecisions.Decide(state, new ReportPeerLost("w1", 1, 2, "w2", "timeout", 10), T0 + 500);

        Assert.Empty(decision.Events);
        Assert.Contains("w1 is no longer part of the job", decision.Refusal);
        Assert.NotNull(JobDecisions.Decide(state, Boundary("w1", 10), T0 + 500).Refusal);
    }

    // --- The regroup's clock ---

    [Fact]
    public void A_rank_silent_past_the_timeout_is_counted_lost_and_the_others_go_on()
    {
        var state = Run(Running(Elastic(3, timeoutSeconds: 30)), PeerLost("w0", 1, 10), T0).State;
        Assert.Empty(JobDecisions.Decide(state, new RegroupTick(), T0 + 29_999).Events);

        var (next, decision) = Run(state, new RegroupTick(), T0 + 30_000);

        Assert.Equal([typeof(WorkerLost), typeof(GenerationStarted)], Kinds(decision));
        var silent = (WorkerLost)decision.Events[0];
        Assert.Equal(("w2", "coordinator"), (silent.WorkerId, silent.DetectedBy));
        Assert.Contains("30 s", silent.Reason);
        var g = Started(decision);
        Assert.Equal(["w0"], g.Ranks.Select(r => r.WorkerId));
        Assert.Equal((2L, 10L, 0, RegroupCauses.Lost), (g.Generation, g.StartStep, g.SourceRank, g.Cause));
        Assert.Equal(JobPhase.Running, next.Phase);
    }

    [Fact]
    public void A_tick_while_running_changes_nothing()
    {
        Assert.Empty(JobDecisions.Decide(Running(2), new RegroupTick(), T0 + 3_600_000).Events);
    }

    [Fact]
    public void Below_min_workers_the_regroup_waits_and_a_newcomer_in_time_starts_the_next_generation()
    {
        var state = Running(Elastic(3, minWorkers: 3, waitSeconds: 60));
        state = Run(state, PeerLost("w0", 2, 10), T0).State;
        var (waiting, complete) = Run(state, PeerLost("w1", 2, 10), T0 + 100);
        // Every survivor reported, but two are fewer than min_workers.
        Assert.Equal([typeof(StepHeld)], Kinds(complete));
        Assert.Equal(JobPhase.Regrouping, waiting.Phase);
        Assert.Empty(JobDecisions.Decide(waiting, new RegroupTick(), T0 + 59_999).Events);

        var (next, decision) = Run(waiting, Register("w3", 29503), T0 + 59_999);

        Assert.Equal([typeof(WorkerJoined), typeof(GenerationStarted)], Kinds(decision));
        var g = Started(decision);
        Assert.Equal(["w0", "w1", "w3"], g.Ranks.Select(r => r.WorkerId));
        Assert.Equal([29500, 29501, 29503], g.Ranks.Select(r => r.DataPlanePort));
        Assert.Equal((2L, 10L, 0, RegroupCauses.Lost), (g.Generation, g.StartStep, g.SourceRank, g.Cause));
        Assert.Equal(JobPhase.Running, next.Phase);
    }

    [Fact]
    public void Below_min_workers_for_longer_than_elastic_wait_the_job_fails_naming_min_workers_and_the_last_checkpoint()
    {
        var state = Running(Elastic(3, minWorkers: 3, waitSeconds: 60));
        state = Run(state, new ReportCheckpoint("w0", 8, "checkpoints/step-00000008", "c8")).State;
        state = Run(state, PeerLost("w0", 2, 10), T0).State;
        state = Run(state, PeerLost("w1", 2, 10), T0 + 100).State;

        var (failed, decision) = Run(state, new RegroupTick(), T0 + 60_000);

        Assert.IsType<JobFailed>(Assert.Single(decision.Events));
        Assert.Equal(JobPhase.Failed, failed.Phase);
        Assert.Contains("elastic.min_workers = 3", failed.FailureReason);
        Assert.Contains("only 2 worker(s) remain", failed.FailureReason);
        Assert.Contains("checkpoints/step-00000008", failed.FailureReason);
        // Too late: the job is over.
        Assert.NotNull(JobDecisions.Decide(failed, Register("w3", 29503), T0 + 61_000).Refusal);
    }

    [Fact]
    public void Below_min_workers_without_a_checkpoint_the_failure_says_none_was_recorded()
    {
        var state = Running(Elastic(2, minWorkers: 2, waitSeconds: 60));
        state = Run(state, PeerLost("w0", 1, 10), T0).State;

        var failed = Run(state, new RegroupTick(), T0 + 60_000).State;

        Assert.Equal(JobPhase.Failed, failed.Phase);
        Assert.Contains("elastic.min_workers = 2", failed.FailureReason);
        Assert.Contains("no checkpoint was recorded yet", failed.FailureReason);
        Assert.Contains("/tmp/run/checkpoints", failed.FailureReason);
    }

    // --- Newcomers ---

    [Fact]
    public void A_newcomer_while_running_only_joins_and_the_generation_keeps_training()
    {
        var (state, decision) = Run(Running(Elastic(2, maxWorkers: 3)), Register("w2", 29502), T0);

        Assert.Equal([typeof(WorkerJoined)], Kinds(decision));
        Assert.Equal((JobPhase.Running, 1L), (state.Phase, state.Generation));
        Assert.Equal(["w2"], state.Newcomers.Select(w => w.WorkerId));
        Assert.Null(state.RankOf("w2"));
    }

    [Fact]
    public void Step_boundary_reports_for_a_newcomer_start_a_generation_that_includes_it()
    {
        var state = Run(Running(Elastic(2, maxWorkers: 3)), Register("w2", 29502), T0).State;

        var (stopped, first) = Run(state, Boundary("w0", 50), T0 + 1000);
        Assert.Equal([typeof(RegroupStarted), typeof(StepHeld)], Kinds(first));
        var regroup = (RegroupStarted)first.Events[0];
        Assert.Equal(RegroupCauses.Joined, regroup.Cause);
        Assert.Contains("w2", regroup.Reason);
        Assert.Equal(JobPhase.Regrouping, stopped.Phase);

        var (next, decision) = Run(stopped, Boundary("w1", 50), T0 + 1010);

        var g = Started(decision);
        Assert.Equal(["w0", "w1", "w2"], g.Ranks.Select(r => r.WorkerId));
        Assert.Equal([0, 1, 2], g.Ranks.Select(r => r.Rank));
        Assert.Equal((2L, 50L, 0, RegroupCauses.Joined), (g.Generation, g.StartStep, g.SourceRank, g.Cause));
        Assert.Equal(3, JobOutcome.From(next).WorldSize);
    }

    [Fact]
    public void A_newcomer_left_alone_before_the_state_reached_it_holds_nothing_and_the_job_fails_rather_than_restart_from_step_0()
    {
        // Generation 2 starts from step 50 with newcomer w2; w0 (the source) and w1 die before the broadcast, so w2 still has
        // the fresh weights of step 0. Seen in the Kubernetes pod test: the job went on "from step 0" and lost 25 steps.
        var state = Run(Running(Elastic(2, maxWorkers: 3)), Register("w2", 29502), T0).State;
        state = Run(state, Boundary("w0", 50), T0 + 1000).State;
        state = Run(state, Boundary("w1", 50), T0 + 1010).State;
        Assert.Equal((JobPhase.Running, 2L), (state.Phase, state.Generation));
        state = Run(state, Died("w0"), T0 + 2000).State;
        state = Run(state, Died("w1"), T0 + 2010).State;

        var (failed, decision) = Run(state, PeerLost("w2", 0, heldStep: 0, generation: 2), T0 + 2100);

        Assert.DoesNotContain(decision.Events, e => e is GenerationStarted);
        Assert.Equal(JobPhase.Failed, failed.Phase);
        Assert.Contains("no replica holds the state in memory", failed.FailureReason);
    }

    [Fact]
    public void A_newcomer_registering_while_reports_are_missing_joins_after_the_survivors()
    {
        var state = Run(Running(3), PeerLost("w0", 1, 10), T0).State;

        var (waiting, joined) = Run(state, Register("w3", 29503), T0 + 100);
        // w2 has not reported: the newcomer waits with the others.
        Assert.Equal([typeof(WorkerJoined)], Kinds(joined));
        Assert.Equal(JobPhase.Regrouping, waiting.Phase);

        var g = Started(Run(waiting, PeerLost("w2", 1, 10), T0 + 200).Decision);
        Assert.Equal(["w0", "w2", "w3"], g.Ranks.Select(r => r.WorkerId));
        Assert.Equal((10L, 0, RegroupCauses.Lost), (g.StartStep, g.SourceRank, g.Cause));
    }

    [Fact]
    public void Newcomers_follow_the_survivors_in_registration_order()
    {
        var state = Running(Elastic(2, maxWorkers: 4));
        state = Run(state, Register("late-b", 29611), T0).State;
        state = Run(state, Register("late-a", 29610), T0).State;
        state = Run(state, Boundary("w1", 5), T0 + 10).State;

        var g = Started(Run(state, Boundary("w0", 5), T0 + 20).Decision);

        Assert.Equal(["w0", "w1", "late-b", "late-a"], g.Ranks.Select(r => r.WorkerId));
        Assert.Equal([29500, 29501, 29611, 29610], g.Ranks.Select(r => r.DataPlanePort));
    }

    [Fact]
    public void Max_workers_refuses_a_newcomer_once_the_job_has_that_many_workers()
    {
        var state = Run(Running(Elastic(2, maxWorkers: 3)), Register("w2", 29502), T0).State;

        var decision = JobDecisions.Decide(state, Register("w3", 29503), T0);

        Assert.Empty(decision.Events);
        Assert.Contains("elastic.max_workers = 3", decision.Refusal);
    }

    [Fact]
    public void A_newcomer_leaving_before_its_first_generation_is_recorded_as_left_without_a_regroup()
    {
        var state = Run(Running(Elastic(2, maxWorkers: 3)), Register("w2", 29502), T0).State;

        // A waiting newcomer has no generation of its own yet (0).
        var (next, decision) = Run(state, Leaving("w2", 0, generation: 0), T0 + 100);

        Assert.Equal(new WorkerLeft("w2", 1, 0), Assert.Single(decision.Events));
        Assert.Equal(JobPhase.Running, next.Phase);
        Assert.Empty(next.Newcomers);
        Assert.Empty(next.Lost);
    }

    // --- Leaving (SIGTERM) ---

    [Fact]
    public void A_leaving_worker_is_recorded_as_left_not_lost_and_the_next_generation_goes_on_without_it()
    {
        var (state, first) = Run(Running(3), Leaving("w2", 40), T0);

        Assert.Equal([typeof(RegroupStarted), typeof(WorkerLeft)], Kinds(first));
        var regroup = (RegroupStarted)first.Events[0];
        Assert.Equal(RegroupCauses.Left, regroup.Cause);
        Assert.Contains("w2 leaving at step 40", regroup.Reason);
        Assert.Equal(new WorkerLeft("w2", 1, 40), first.Events[1]);

        state = Run(state, Boundary("w0", 40, leavers: 1), T0 + 10).State;
        var (next, decision) = Run(state, Boundary("w1", 40, leavers: 1), T0 + 20);

        var g = Started(decision);
        Assert.Equal(["w0", "w1"], g.Ranks.Select(r => r.WorkerId));
        Assert.Equal((2L, 40L, 0, RegroupCauses.Left), (g.Generation, g.StartStep, g.SourceRank, g.Cause));
        Assert.Empty(next.Lost);
        Assert.Equal("w2", Assert.Single(next.Left).WorkerId);
    }

    [Fact]
    public void A_step_boundary_naming_leavers_starts_a_left_regroup_before_the_leaver_reports()
    {
        var (state, first) = Run(Running(3), Boundary("w0", 40, leavers: 1), T0);

        Assert.Equal([typeof(RegroupStarted), typeof(StepHeld)], Kinds(first));
        Assert.Equal(RegroupCauses.Left, ((RegroupStarted)first.Events[0]).Cause);

        // The leaver's own report comes during the regroup: it leaves, it is not lost.
        var (after, leave) = Run(state, Leaving("w2", 40), T0 + 10);
        Assert.Equal([typeof(WorkerLeft)], Kinds(leave));
        Assert.Empty(after.Lost);

        var g = Started(Run(after, Boundary("w1", 40, leavers: 1), T0 + 20).Decision);
        Assert.Equal(["w0", "w1"], g.Ranks.Select(r => r.WorkerId));
        Assert.Equal(RegroupCauses.Left, g.Cause);
    }

    // --- Incarnations: the same worker id from a new process ---

    [Fact]
    public void Registering_again_with_the_same_incarnation_while_running_is_a_retry()
    {
        var state = Running(Elastic(2, maxWorkers: 3));

        var decision = JobDecisions.Decide(state, Register("w1", 29501), T0);

        Assert.Empty(decision.Events);
        Assert.Null(decision.Refusal);
    }

    [Fact]
    public void A_new_incarnation_of_a_member_loses_its_predecessor_and_joins_in_its_place()
    {
        // At max_workers (3 of 3): the replacement is still admitted, because its predecessor's place is free.
        var (state, decision) = Run(Running(3), Restarted("w1", 29511), T0);

        Assert.Equal([typeof(RegroupStarted), typeof(WorkerLost), typeof(WorkerJoined)], Kinds(decision));
        Assert.Equal(RegroupCauses.Lost, ((RegroupStarted)decision.Events[0]).Cause);
        var lost = (WorkerLost)decision.Events[1];
        Assert.Equal(("w1", "coordinator"), (lost.WorkerId, lost.DetectedBy));
        var joined = (WorkerJoined)decision.Events[2];
        Assert.Equal(("w1", "second", 29511, 2), (joined.WorkerId, joined.Incarnation, joined.DataPlanePort, joined.ProcessId));
        Assert.Equal("second", state.Member("w1")?.Incarnation);
        Assert.Equal(JobPhase.Regrouping, state.Phase);
    }

    [Fact]
    public void A_restarted_process_joins_the_next_generation_once_the_survivors_reported()
    {
        var state = Run(Running(3), Died("w1", processId: 1), T0).State;
        state = Run(state, Restarted("w1", 29511), T0 + 100).State;
        state = Run(state, Boundary("w0", 10), T0 + 150).State;

        var decision = JobDecisions.Decide(state, Boundary("w2", 10), T0 + 200);

        var g = Started(decision);
        Assert.Equal(["w0", "w2", "w1"], g.Ranks.Select(r => r.WorkerId));
        Assert.Equal([29500, 29502, 29511], g.Ranks.Select(r => r.DataPlanePort));
        Assert.Equal((2L, 10L, 0), (g.Generation, g.StartStep, g.SourceRank));
    }

    [Fact]
    public void A_survivors_blame_of_the_dead_process_does_not_lose_its_restarted_successor()
    {
        var state = Run(Running(3), Died("w1", processId: 1), T0).State;
        state = Run(state, Restarted("w1", 29511), T0 + 100).State;

        var (next, decision) = Run(state, PeerLost("w0", 1, 10), T0 + 150);

        Assert.DoesNotContain(decision.Events, e => e is WorkerLost);
        Assert.Equal("second", next.Member("w1")?.Incarnation);
    }

    [Fact]
    public void A_restarted_process_does_not_inherit_the_step_its_predecessor_held()
    {
        var state = Run(Running(4), Died("w3"), T0).State;
        state = Run(state, Boundary("w1", 11), T0 + 10).State;          // w1 is one step ahead, then its process dies
        state = Run(state, Died("w1", processId: 1), T0 + 20).State;
        state = Run(state, Restarted("w1", 29511), T0 + 100).State;     // a fresh process: an empty replica
        state = Run(state, Boundary("w0", 10), T0 + 110).State;

        var g = Started(Run(state, Boundary("w2", 10), T0 + 120).Decision);

        // The survivors hold step 10; the newcomer adopts w0's state.
        Assert.Equal(["w0", "w2", "w1"], g.Ranks.Select(r => r.WorkerId));
        Assert.Equal((10L, 0), (g.StartStep, g.SourceRank));
    }

    // --- Recovery time and the outcome ---

    [Fact]
    public void The_first_step_after_a_lost_regroup_records_the_recovery_seconds_and_the_outcome_carries_them()
    {
        var state = Run(Running(3), Died("w2"), T0).State;
        state = Run(state, Boundary("w0", 10), T0 + 500).State;
        state = Run(state, Boundary("w1", 10), T0 + 600).State;
        Assert.Empty(state.Recoveries);

        var (recovered, decision) = Run(state, Step("w0", 2, 11), T0 + 4_250);

        Assert.Equal(new StepCommitted(2, 11, 1.5, 100, T0 + 4_250), Assert.Single(decision.Events));
        Assert.Equal([4.25], recovered.Recoveries);
        Assert.Null(recovered.RecoveringSinceUnixMs);
        // Later steps are no recovery.
        Assert.Equal([4.25], Run(recovered, Step("w0", 2, 12), T0 + 5_000).State.Recoveries);

        var outcome = JobOutcome.From(recovered);
        Assert.Equal([new GenerationRecord(1, 3, 0, RegroupCauses.Start), new GenerationRecord(2, 2, 10, RegroupCauses.Lost)], outcome.Generations);
        Assert.Equal([4.25], outcome.Recoveries);
        Assert.Equal((2, 2L, 11L), (outcome.WorldSize, outcome.Generation, outcome.Steps));
    }

    [Fact]
    public void A_leave_counts_as_a_recovery_from_the_leavers_report()
    {
        var state = Run(Running(2), Leaving("w1", 30), T0).State;
        state = Run(state, Boundary("w0", 30, leavers: 1), T0 + 100).State;

        var recovered = Run(state, Step("w0", 2, 31), T0 + 2_000).State;

        Assert.Equal([2.0], recovered.Recoveries);
        Assert.Equal(RegroupCauses.Left, JobOutcome.From(recovered).Generations[^1].Cause);
    }

    [Fact]
    public void A_regroup_for_a_newcomer_is_no_recovery()
    {
        var state = Run(Running(Elastic(2, maxWorkers: 3)), Register("w2", 29502), T0).State;
        state = Run(state, Boundary("w0", 50), T0 + 1000).State;
        state = Run(state, Boundary("w1", 50), T0 + 1010).State;

        var after = Run(state, Step("w0", 2, 51), T0 + 3000).State;

        Assert.Equal(51, after.LastStep);
        Assert.Empty(after.Recoveries);
        var outcome = JobOutcome.From(after);
        Assert.Equal([RegroupCauses.Start, RegroupCauses.Joined], outcome.Generations.Select(g => g.Cause));
        Assert.Equal(3, outcome.WorldSize);
    }

    [Fact]
    public void A_worker_lost_during_a_regroup_for_a_newcomer_turns_it_into_a_recovery()
    {
        var state = Run(Running(Elastic(3, maxWorkers: 4)), Step("w0", 1, 50), T0 - 500).State;
        state = Run(state, Register("w3", 29503), T0).State;
        state = Run(state, Boundary("w0", 50), T0 + 1_000).State;      // the ring stops for the newcomer
        Assert.Equal(RegroupCauses.Joined, state.RegroupCause);

        var (lost, loss) = Run(state, Died("w2"), T0 + 1_500);

        Assert.Equal([typeof(RegroupStarted), typeof(WorkerLost)], Kinds(loss));
        var regroup = (RegroupStarted)loss.Events[0];
        Assert.Equal((1L, RegroupCauses.Lost, T0 + 1_500), (regroup.Generation, regroup.Cause, regroup.AtUnixMs));
        Assert.Contains("w2 lost (", regroup.Reason);
        Assert.Contains("last reported step 50", regroup.Reason);
        // w0's report stands; w1 has not reported yet.
        Assert.Equal((JobPhase.Regrouping, RegroupCauses.Lost), (lost.Phase, lost.RegroupCause));
        Assert.Equal<long?>(T0 + 1_500, lost.RecoveringSinceUnixMs);

        var (next, decision) = Run(lost, Boundary("w1", 50), T0 + 1_600);

        Assert.Equal([typeof(StepHeld), typeof(GenerationStarted)], Kinds(decision));
        var g = Started(decision);
        Assert.Equal(["w0", "w1", "w3"], g.Ranks.Select(r => r.WorkerId));
        Assert.Equal((2L, 50L, 0, RegroupCauses.Lost), (g.Generation, g.StartStep, g.SourceRank, g.Cause));

        var (recovered, first) = Run(next, Step("w0", 2, 51), T0 + 4_000);

        Assert.Equal(new StepCommitted(2, 51, 1.5, 100, T0 + 4_000), Assert.Single(first.Events));
        // From the loss, not from the newcomer's regroup.
        Assert.Equal([2.5], recovered.Recoveries);
        Assert.Equal([RegroupCauses.Start, RegroupCauses.Lost], JobOutcome.From(recovered).Generations.Select(r => r.Cause));
    }

    [Fact]
    public void A_second_failure_before_the_first_recovery_completes_counts_from_the_first()
    {
        var state = Run(Running(3), Died("w2"), T0).State;
        state = Run(state, Boundary("w0", 10), T0 + 100).State;
        state = Run(state, Boundary("w1", 10), T0 + 200).State;      // generation 2: w0, w1
        state = Run(state, Died("w1"), T0 + 1_000).State;            // before generation 2 committed a step
        state = Run(state, Boundary("w0", 10, generation: 2), T0 + 1_100).State;
        Assert.Equal((JobPhase.Running, 3L), (state.Phase, state.Generation));

        var recovered = Run(state, Step("w0", 3, 11), T0 + 3_000).State;

        Assert.Equal([3.0], recovered.Recoveries);
    }

    [Fact]
    public void The_first_step_after_a_regroup_that_went_back_a_step_records_the_recovery()
    {
        // Rank 0 committed step 11 and was lost; the survivors only hold 10.
        var state = Run(Running(3), Step("w0", 1, 11), T0 - 1_000).State;
        state = Run(state, Died("w0"), T0).State;
        state = Run(state, Boundary("w1", 10), T0 + 100).State;
        state = Run(state, Boundary("w2", 10), T0 + 200).State;
        Assert.Equal((2L, 10L), (state.Generation, state.Current!.StartStep));

        var (recovered, decision) = Run(state, Step("w1", 2, 11), T0 + 3_000);

        Assert.Equal(new StepCommitted(2, 11, 1.5, 100, T0 + 3_000), Assert.Single(decision.Events));
        Assert.Equal([3.0], recovered.Recoveries);
    }

    // --- The last step ---

    private static ReportFinished FinalReport(string worker, int rank, long step) =>
        new(worker, rank, step, 0.5, 10, "c", new Dictionary<string, double>());

    [Fact]
    public void A_rank_that_finished_before_a_peer_was_lost_is_not_waited_for_and_leaves_when_the_next_generation_starts()
    {
        var state = Run(Running(3), Step("w0", 1, 100), T0 - 1_000).State;
        // The last step is done; w1 finished its evaluation, w0's failed on w2.
        state = Run(state, FinalReport("w1", 1, 100), T0 - 500).State;

        var (next, decision) = Run(state, PeerLost("w0", 2, 100), T0);

        // w1 is not pending: w0 alone forms the next generation, from the last step; w1 is done, so it leaves (not a newcomer).
        Assert.Equal([typeof(RegroupStarted), typeof(StepHeld), typeof(WorkerLost), typeof(WorkerLeft), typeof(GenerationStarted)], Kinds(decision));
        Assert.Equal("w2", ((WorkerLost)decision.Events[2]).WorkerId);
        Assert.Equal(new WorkerLeft("w1", 1, 100), decision.Events[3]);
        var g = Started(decision);
        Assert.Equal(["w0"], g.Ranks.Select(r => r.WorkerId));
        Assert.Equal((2L, 100L, 0, RegroupCauses.Lost), (g.Generation, g.StartStep, g.SourceRank, g.Cause));
        Assert.Equal((JobPhase.Running, 2L), (next.Phase, next.Generation));
        Assert.Empty(next.Newcomers);

        // w1's process exits after its final report: nothing more to record, and no loss.
        var (after, exited) = Run(next, Died("w1", processId: 1), T0 + 200);
        Assert.Empty(exited.Events);
        Assert.Equal(["w2"], after.Lost.Select(l => l.WorkerId));
        Assert.Equal(["w1"], after.Left.Select(l => l.WorkerId));
        Assert.Equal(JobPhase.Running, after.Phase);

        var (done, finished) = Run(after, FinalReport("w0", 0, 100), T0 + 1_000);

        Assert.Equal([typeof(WorkerFinished), typeof(JobCompleted)], Kinds(finished));
        Assert.Equal(new JobCompleted(2, 100), finished.Events[1]);
        Assert.Equal(JobPhase.Completed, done.Phase);
    }
}
