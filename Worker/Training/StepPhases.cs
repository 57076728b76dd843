using System.Diagnostics;
using Pretrain.Shared.Telemetry;
using Pretrain.Worker.Telemetry;
using Prometheus;

namespace Pretrain.Worker.Training;

/// <summary>The phases of a step, as <c>pretrain_step_phase_seconds{phase=…}</c> labels them.</summary>
public enum StepPhase { Data, Forward, Backward, AllReduce, Optimizer }

/// <summary>
/// A lap timer over the phases of one step: the loop starts it, the method marks the end of its data,
/// forward and backward work, the loop the allreduce and the optimizer. Each lap is observed into the
/// phase histogram; the label children are looked up once. With <c>--trace</c> each lap is also a span of the
/// step timeline (<see cref="TraceRecorder"/>); without it, that costs a null check. The allreduce phase is
/// what the step waited for after backward; the gradient buckets mostly run during backward, and
/// <see cref="Reduced"/> records how long they ran and how much of that backward hid.
/// </summary>
public sealed class StepPhases(TraceRecorder? trace = null)
{
    private readonly Histogram.Child[] _phases =
    [
        PretrainMetrics.StepPhaseSeconds.WithLabels(PretrainMetrics.Phase.Data),
        PretrainMetrics.StepPhaseSeconds.WithLabels(PretrainMetrics.Phase.Forward),
        PretrainMetrics.StepPhaseSeconds.WithLabels(PretrainMetrics.Phase.Backward),
        PretrainMetrics.StepPhaseSeconds.WithLabels(PretrainMetrics.Phase.AllReduce),
        PretrainMetrics.StepPhaseSeconds.WithLabels(PretrainMetrics.Phase.Optimizer),
    ];
    private readonly Histogram.Child _allReduceTotal = PretrainMetrics.GradientAllReduceSeconds.WithLabels(PretrainMetrics.AllReducePart.Total);
    private readonly Histogram.Child _allReduceHidden = PretrainMetrics.GradientAllReduceSeconds.WithLabels(PretrainMetrics.AllReducePart.Hidden);
    private long _since = Stopwatch.GetTimestamp();
    private long _step = -1;

    /// <summary>Starts timing from now (the beginning of step <paramref name="step"/>, which the trace shows with each phase).</summary>
    public void Start(long step = -1)
    {
        _since = Stopwatch.GetTimestamp();
        _step = step;
    }

    /// <summary>Observes the time since the last lap as <paramref name="phase"/> and starts the next lap.</summary>
    public void Lap(StepPhase phase)
    {
        var now = Stopwatch.GetTimestamp();
        _phases[(int)phase].Observe(Stopwatch.GetElapsedTime(_since, now).TotalSeconds);
        trace?.Complete(KindOf(phase), _since, now, _step);
        _since = now;
    }

    /// <summary>
    /// The step's gradient allreduce against its backward pass: observed as pretrain_gradient_allreduce_seconds (total and
    /// hidden) and, with <c>--trace</c>, a span of the gradients track from the first bucket's start to the last one's
    /// end. Nothing when nothing crossed the network.
    /// </summary>
    public void Reduced(GradientReduction reduction)
    {
        if (reduction.Ended == 0) return;
        _allReduceTotal.Observe(reduction.Seconds);
        _allReduceHidden.Observe(reduction.HiddenSeconds);
        trace?.Complete(TraceKind.GradientAllReduce, reduction.Started, reduction.Ended, _step);
    }

    private static TraceKind KindOf(StepPhase phase) => phase switch
    {
        StepPhase.Data => TraceKind.Data,
        StepPhase.Forward => TraceKind.Forward,
        StepPhase.Backward => TraceKind.Backward,
        StepPhase.AllReduce => TraceKind.AllReduce,
        _ => TraceKind.Optimizer,
    };
}
