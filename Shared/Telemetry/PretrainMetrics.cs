using Prometheus;

namespace Pretrain.Shared.Telemetry;

/// <summary>
/// Every Prometheus metric the product exports, declared once and named <c>pretrain_*</c> (brief,
/// user-facing contract). Each process (coordinator, worker) serves the ones it updates on its own
/// <c>/metrics</c> port.
/// </summary>
public static class PretrainMetrics
{
    public static readonly Counter StepsTotal = Metrics.CreateCounter(
        "pretrain_steps_total", "Optimizer steps completed (per worker; the coordinator mirrors rank 0).");

    public static readonly Gauge Loss = Metrics.CreateGauge(
        "pretrain_loss", "Training loss of the last step (global mean over all ranks).");

    public static readonly Gauge SamplesPerSecond = Metrics.CreateGauge(
        "pretrain_samples_per_second", "Global samples per second over the last step.");

    public static readonly Histogram StepPhaseSeconds = Metrics.CreateHistogram(
        "pretrain_step_phase_seconds", "Time per training step phase.",
        new HistogramConfiguration
        {
            LabelNames = ["phase"],
            // 100 µs … ~52 s: a tiny model's optimizer step up to a large model's allreduce.
            Buckets = Histogram.ExponentialBuckets(0.0001, 2, 20),
        });

    public static readonly Histogram GradientAllReduceSeconds = Metrics.CreateHistogram(
        "pretrain_gradient_allreduce_seconds",
        "Time per step the gradient buckets were being reduced: part=\"total\", and part=\"hidden\", the share of it that ran while backward went on. " +
        "The step waited for the rest: pretrain_step_phase_seconds{phase=\"allreduce\"}.",
        new HistogramConfiguration
        {
            LabelNames = ["part"],
            Buckets = Histogram.ExponentialBuckets(0.0001, 2, 20),
        });

    public static readonly Counter AllReduceBytesTotal = Metrics.CreateCounter(
        "pretrain_allreduce_bytes_total", "Bytes of gradient reduced by allreduce (payload size, per call).");

    public static readonly Gauge Workers = Metrics.CreateGauge(
        "pretrain_workers", "Workers in the current generation (coordinator) or world size (worker).");

    public static readonly Gauge Generation = Metrics.CreateGauge(
        "pretrain_generation", "Current rendezvous generation.");

    public static readonly Gauge WorldSize = Metrics.CreateGauge(
        "pretrain_world_size", "Ranks of the current generation.");

    public static readonly Counter RecoveriesTotal = Metrics.CreateCounter(
        "pretrain_recoveries_total", "Regroups into a new generation, by cause: lost (a worker died or froze), left (SIGTERM), joined (a newcomer admitted).",
        new CounterConfiguration { LabelNames = ["cause"] });

    public static readonly Gauge RecoverySeconds = Metrics.CreateGauge(
        "pretrain_recovery_seconds", "Seconds from the newest failure's detection to the first step committed by the generation after it.");

    public static readonly Counter CheckpointsTotal = Metrics.CreateCounter(
        "pretrain_checkpoints_total", "Checkpoints written and verified.");

    public static readonly Gauge LastCheckpointTimestamp = Metrics.CreateGauge(
        "pretrain_last_checkpoint_timestamp_seconds", "Unix time the newest checkpoint was published (time() minus this is the checkpoint age: what a failure would cost).");

    /// <summary>Counts a published checkpoint and stamps its time.</summary>
    public static void CheckpointPublished()
    {
        CheckpointsTotal.Inc();
        LastCheckpointTimestamp.SetToCurrentTimeUtc();
    }

    public static readonly Histogram CheckpointBlockingSeconds = Metrics.CreateHistogram(
        "pretrain_checkpoint_blocking_seconds", "Time rank 0's training thread spends on a checkpoint save (the snapshot copy, and waiting for the previous write).",
        new HistogramConfiguration { Buckets = Histogram.ExponentialBuckets(0.0001, 2, 20) });

    public static readonly Counter CollectiveFailuresTotal = Metrics.CreateCounter(
        "pretrain_collective_failures_total", "Collectives that failed (peer lost or timed out).");

    public static readonly Counter SkippedStepsTotal = Metrics.CreateCounter(
        "pretrain_skipped_steps_total", "Steps whose update was dropped because the loss or gradient was NaN or infinite (on_nonfinite_loss: skip).");

    public static readonly Gauge Eval = Metrics.CreateGauge(
        "pretrain_eval", "Latest evaluation result by metric: val_loss, bits_per_byte, masked_accuracy, knn_accuracy, linear_probe_accuracy…",
        new GaugeConfiguration { LabelNames = ["metric"] });

    public static readonly Counter RejectedConnectionsTotal = Metrics.CreateCounter(
        "pretrain_rejected_connections_total",
        "Connections and requests refused for want of proof of the job secret, or malformed: plane = control (registrations, cluster members) or data (ring connections).",
        new CounterConfiguration { LabelNames = ["plane", "reason"] });

    /// <summary>Counts one refusal on <paramref name="plane"/> ("control" or "data") for <paramref name="reason"/> (a short snake_case word).</summary>
    public static void Rejected(string plane, string reason) => RejectedConnectionsTotal.WithLabels(plane, reason).Inc();

    /// <summary>Phase label values of <see cref="StepPhaseSeconds"/>.</summary>
    public static class Phase
    {
        public const string Data = "data";
        public const string Forward = "forward";
        public const string Backward = "backward";
        public const string AllReduce = "allreduce";
        public const string Optimizer = "optimizer";
    }

    /// <summary>Part label values of <see cref="GradientAllReduceSeconds"/>.</summary>
    public static class AllReducePart
    {
        public const string Total = "total";
        public const string Hidden = "hidden";
    }
}
