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
/// step timeline (<see cref="TraceRecorder"/>); without it, that costs a null check.
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

    private static TraceKind KindOf(StepPhase phase) => phase switch
    {
        StepPhase.Data => TraceKind.Data,
        StepPhase.Forward => TraceKind.Forward,
        StepPhase.Backward => TraceKind.Backward,
        StepPhase.AllReduce => TraceKind.AllReduce,
        _ => TraceKind.Optimizer,
    };
}
