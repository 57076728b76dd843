using System.Diagnostics;
using Pretrain.Shared.Telemetry;
using Prometheus;

namespace Pretrain.Worker.Training;

/// <summary>The phases of a step, as <c>pretrain_step_phase_seconds{phase=…}</c> labels them.</summary>
public enum StepPhase { Data, Forward, Backward, AllReduce, Optimizer }

/// <summary>
/// A lap timer over the phases of one step: the loop starts it, the method marks the end of its data,
/// forward and backward work, the loop the allreduce and the optimizer. Each lap is observed into the
/// phase histogram; the label children are looked up once.
/// </summary>
public sealed class StepPhases
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

    /// <summary>Starts timing from now (the beginning of a step).</summary>
    public void Start() => _since = Stopwatch.GetTimestamp();

    /// <summary>Observes the time since the last lap as <paramref name="phase"/> and starts the next lap.</summary>
    public void Lap(StepPhase phase)
    {
        var now = Stopwatch.GetTimestamp();
        _phases[(int)phase].Observe(Stopwatch.GetElapsedTime(_since, now).TotalSeconds);
        _since = now;
    }
}
