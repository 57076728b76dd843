using Pretrain.Coordinator.State;
using Pretrain.Shared.Messages;
using Xunit;

namespace Pretrain.Tests.Coordinator;

/// <summary>The coordinator's decisions, without an ActorSystem.</summary>
public sealed class JobStateTests
{
    internal static JobSpec Spec(int worldSize) => new("method: simclr\n", "hash", worldSize, 100, "/tmp/run", false);

    internal static RegisterWorker Register(string id, int port = 29500) => new(id, "127.0.0.1", port, 9100, 1);

    /// <summary>Decides and applies, as the actor does after persisting; <paramref name="nowUnixMs"/> is the actor's clock.</summary>
    internal static (JobState State, Decision Decision) Run(JobState state, object command, long nowUnixMs = 0)
    {
        var decision = JobDecisions.Decide(state, command, nowUnixMs);
        return (state.ApplyAll(decision.Events), decision);
    }

    internal static JobState Running(int worldSize) => Running(Spec(worldSize));

    /// <summary>Generation 1 of <paramref name="spec"/>: workers w0, w1, … at ranks 0, 1, … on ports 29500, 29501, ….</summary>
    internal static JobState Running(JobSpec spec)
    {
        var state = Run(JobState.Empty, new DefineJob(spec)).State;
        for (var i = 0; i < spec.WorldSize; i++) state = Run(state, Register($"w{i}", 29500 + i)).State;
        return state;
    }

    [Fact]
    public void Defining_a_job_starts_rendezvous_and_the_same_spec_again_is_a_no_op()
    {
        var (state, first) = Run(JobState.Empty, new DefineJob(Spec(2)));
        Assert.IsType<JobDefined>(Assert.Single(first.Events));
        Assert.Equal(JobPhase.Rendezvous, state.Phase);

        Assert.Same(Decision.None, JobDecisions.Decide(state, new DefineJob(Spec(2))));
        Assert.NotNull(JobDecisions.Decide(state, new DefineJob(Spec(3))).Refusal);
    }

    [Fact]
    public void A_worker_cannot_register_before_a_job_is_defined()
    {
        Assert.NotNull(JobDecisions.Decide(JobState.Empty, Register("w0")).Refusal);
    }

    [Fact]
    public void Registering_the_same_worker_twice_is_idempotent()
    {
        var state = Run(Run(JobState.Empty, new DefineJob(Spec(2))).State, Register("w0")).State;
        var (again, decision) = Run(state, Register("w0"));
        Assert.Empty(decision.Events);
        Assert.Null(decision.Refusal);
        Assert.Single(again.Workers);
    }

    [Fact]
    public void Generation_starts_when_world_size_workers_registered_with_ranks_in_registration_order()
    {
        var state = Run(JobState.Empty, new DefineJob(Spec(3))).State;
        state = Run(state, Register("b", 1)).State;
        state = Run(state, Register("a", 2)).State;
        Assert.Equal(JobPhase.Rendezvous, state.Phase);

        var (running, decision) = Run(state, Register("c", 3));

        var generation = Assert.IsType<GenerationStarted>(decision.Events[^1]);
        Assert.Equal(1, generation.Generation);
        Assert.Equal(["b", "a", "c"], generation.Ranks.Select(r => r.WorkerId));
        Assert.Equal([0, 1, 2], generation.Ranks.Select(r => r.Rank));
        Assert.Equal([1, 2, 3], generation.Ranks.Select(r => r.DataPlanePort));
        Assert.Equal(JobPhase.Running, running.Phase);
        Assert.Equal(2, running.RankOf("c"));
    }

    [Fact]
    public void A_world_of_one_starts_on_the_first_registration()
    {
        var state = Running(1);
        Assert.Equal(JobPhase.Running, state.Phase);
        Assert.Equal("w0", Assert.Single(state.Ranks).WorkerId);
    }

    [Fact]
    public void A_running_generation_below_max_workers_lets_a_newcomer_wait_without_regrouping()
    {
        var (state, decision) = Run(Running(Spec(2) with { MaxWorkers = 3 }), Register("late", 29600));

        var joined = Assert.IsType<WorkerJoined>(Assert.Single(decision.Events));
        Assert.Equal(("late", 29600), (joined.WorkerId, joined.DataPlanePort));
        Assert.Equal((JobPhase.Running, 1L), (state.Phase, state.Generation));
        Assert.Equal(["late"], state.Newcomers.Select(w => w.WorkerId));
    }

    [Fact]
    public void A_running_generation_at_max_workers_refuses_newcomers()
    {
        // max_workers 0 means the started world size.
        var decision = JobDecisions.Decide(Running(2), Register("late"));
        Assert.Empty(decision.Events);
        Assert.Contains("elastic.max_workers = 2", decision.Refusal);
    }

    [Fact]
    public void Only_rank_zero_progress_of_the_current_generation_commits_steps_and_steps_only_advance()
    {
        var state = Running(2);
        Assert.Empty(JobDecisions.Decide(state, new ReportProgress("w1", 1, 1, 5, 2.0, 10)).Events);
        Assert.Empty(JobDecisions.Decide(state, new ReportProgress("w0", 0, 0, 5, 2.0, 10)).Events);

        state = Run(state, new ReportProgress("w0", 1, 0, 5, 2.0, 10)).State;
        Assert.Equal((5L, 2.0), (state.LastStep, state.LastLoss));
        Assert.Empty(JobDecisions.Decide(state, new ReportProgress("w0", 1, 0, 4, 2.5, 10)).Events);
    }

    [Fact]
    public void Checkpoints_are_recorded_once_per_newer_step()
    {
        var state = Run(Running(1), new ReportCheckpoint("w0", 10, "checkpoints/step-00000010", "c1")).State;
        Assert.Equal(10, state.LastCheckpointStep);
        Assert.Empty(JobDecisions.Decide(state, new ReportCheckpoint("w0", 10, "checkpoints/step-00000010", "c1")).Events);
        Assert.Single(Run(state, new ReportCheckpoint("w0", 20, "checkpoints/step-00000020", "c2")).State.Checkpoints.Skip(1));
    }

    [Fact]
    public void A_peer_lost_report_records_who_was_lost_and_by_whom_and_the_survivor_goes_on_alone()
    {
        var (state, decision) = Run(Running(2), new ReportPeerLost("w0", 1, 1, "w1", "connection reset", 7));

        var lost = Assert.Single(decision.Events.OfType<WorkerLost>());
        Assert.Equal(("w1", "w0", "connection reset"), (lost.WorkerId, lost.DetectedBy, lost.Reason));
        var next = Assert.IsType<GenerationStarted>(decision.Events[^1]);
        Assert.Equal((2L, 7L, 0, RegroupCauses.Lost), (next.Generation, next.StartStep, next.SourceRank, next.Cause));
        Assert.Equal(["w0"], next.Ranks.Select(r => r.WorkerId));
        Assert.Equal((JobPhase.Running, 2L), (state.Phase, state.Generation));
        Assert.Null(state.FailureReason);
        Assert.Equal(["w0"], state.Workers.Select(w => w.WorkerId));
        // The death watch seeing the same loss adds nothing.
        Assert.Empty(JobDecisions.Decide(state, new LoseWorker("w1", "terminated", "coordinator")).Events);
    }

    [Fact]
    public void A_peer_lost_report_without_a_worker_id_names_the_worker_by_its_rank()
    {
        var state = Run(Running(3), new ReportPeerLost("w0", 1, 2, "", "timeout")).State;
        Assert.Equal("w2", Assert.Single(state.Lost).WorkerId);
        // w1 has not reported the step it holds yet.
        Assert.Equal(JobPhase.Regrouping, state.Phase);
    }

    [Fact]
    public void Losing_a_worker_during_rendezvous_only_removes_it()
    {
        var state = Run(Run(JobState.Empty, new DefineJob(Spec(2))).State, Register("w0")).State;
        state = Run(state, new LoseWorker("w0", "terminated", "coordinator")).State;
        Assert.Equal(JobPhase.Rendezvous, state.Phase);
        Assert.Empty(state.Workers);
        Assert.Single(state.Lost);
    }

    [Fact]
    public void The_job_completes_when_every_rank_finished_and_a_finished_worker_may_exit()
    {
        var state = Running(2);
        state = Run(state, new ReportFinished("w1", 1, 100, 0.5, 10, "c", new Dictionary<string, double>())).State;
        Assert.Equal(JobPhase.Running, state.Phase);
        // Its exit is a departure, not a loss: no regroup.
        (state, var exited) = Run(state, new LoseWorker("w1", "exited", "coordinator"));
        Assert.Equal(new WorkerLeft("w1", 1, 100), Assert.Single(exited.Events));
        Assert.Equal(JobPhase.Running, state.Phase);

        var (done, decision) = Run(state, new ReportFinished("w0", 0, 100, 0.5, 10, "c", new Dictionary<string, double>()));

        Assert.Equal(new JobCompleted(1, 100), decision.Events[^1]);
        var outcome = JobOutcome.From(done);
        Assert.True(outcome.Succeeded);
        Assert.Equal([0, 1], outcome.Ranks.Select(r => r.Rank));
        Assert.Equal(100, outcome.Steps);
    }

    [Fact]
    public void A_finish_report_with_the_wrong_rank_is_ignored()
    {
        Assert.Empty(JobDecisions.Decide(Running(2), new ReportFinished("w0", 1, 100, 0.5, 10, "c", new Dictionary<string, double>())).Events);
    }

    [Fact]
    public void A_failed_worker_fails_the_job_with_its_reason_and_a_failed_job_ignores_later_reports()
    {
        var state = Run(Running(2), new ReportFailed("w1", 1, "NaN loss")).State;
        Assert.Equal(JobPhase.Failed, state.Phase);
        Assert.Contains("NaN loss", state.FailureReason);
        Assert.False(JobOutcome.From(state).Succeeded);
        Assert.Empty(JobDecisions.Decide(state, new ReportFailed("w0", 0, "again")).Events);
        Assert.NotNull(JobDecisions.Decide(state, Register("w9")).Refusal);
    }

    [Fact]
    public void Status_reflects_the_state()
    {
        var status = Run(Running(2), new ReportProgress("w0", 1, 0, 7, 1, 1)).State.ToStatus();
        Assert.Equal(("Running", 1L, 7L), (status.Phase, status.Generation, status.LastStep));
        Assert.Equal(["w0", "w1"], status.Workers);
    }
}
