using System.Diagnostics;
using Pretrain.Shared.Recipes;
using Pretrain.Shared.Telemetry;
using Pretrain.Worker.Training;

namespace Pretrain.Bench;

/// <summary>
/// Times a <see cref="Trainer"/>'s steps from its progress reports, which the loop makes inline on its training
/// thread after each committed step. The interval between two reports is one whole turn of the loop — data,
/// forward, backward, allreduce, optimizer and the loop's own bookkeeping — so nothing the loop does per step
/// escapes it. From the report of step <c>warmup</c> to that of step <c>warmup + steps</c> it keeps every
/// interval, the step phases (<c>pretrain_step_phase_seconds</c>, this process's), the gradient allreduce and its hidden
/// part (from the reports) and the process's CPU time;
/// then it cancels the run (<see cref="Token"/>), which stops at the top of the next turn, before any
/// checkpoint or evaluation.
/// </summary>
public sealed class StepProbe(long warmup, long steps) : IProgress<StepReport>, IDisposable
{
    private static readonly string[] Phases =
        [PretrainMetrics.Phase.Data, PretrainMetrics.Phase.Forward, PretrainMetrics.Phase.Backward, PretrainMetrics.Phase.AllReduce, PretrainMetrics.Phase.Optimizer];

    private readonly CancellationTokenSource _stop = new();
    private readonly List<double> _stepMs = [];
    private double[] _phasesAtStart = [];
    private CpuTimes _cpuAtStart;
    private long _start, _previous;
    private double _allReduceSeconds, _hiddenSeconds;

    /// <summary>Cancelled after the last measured step: pass it to the run.</summary>
    public CancellationToken Token => _stop.Token;

    /// <summary>The measured steps, once the last of them has been reported; null before.</summary>
    public StepWindow? Window { get; private set; }

    public void Report(StepReport report)
    {
        var now = Stopwatch.GetTimestamp();
        if (report.Step == warmup)
        {
            (_phasesAtStart, _cpuAtStart) = (PhaseSums(), CpuTimes.OfThisProcess());
            _start = now;
        }
        else if (report.Step > warmup && Window is null)
        {
            _stepMs.Add(Stopwatch.GetElapsedTime(_previous, now).TotalMilliseconds);
            (_allReduceSeconds, _hiddenSeconds) = (_allReduceSeconds + report.AllReduceSeconds, _hiddenSeconds + report.HiddenAllReduceSeconds);
        }
        _previous = now;

        if (report.Step == warmup + steps)
        {
            var cpu = CpuTimes.OfThisProcess() - _cpuAtStart;
            var phases = PhaseSums().Zip(_phasesAtStart, (end, start) => (end - start) / steps * 1e3).ToArray();
            Window = new StepWindow([.. _stepMs], Stopwatch.GetElapsedTime(_start, now).TotalSeconds, phases, cpu,
                _allReduceSeconds / steps * 1e3, _hiddenSeconds / steps * 1e3);
            _stop.Cancel();
        }
    }

    /// <summary>
    /// The recipe as a probed run needs it: longer than the measured steps, so the probe stops the run rather than
    /// its end (the LR schedule then spans at least that many steps), and no checkpoint or evaluation on the way.
    /// </summary>
    public static Recipe RecipeFor(Recipe recipe, long warmupSteps, long measuredSteps) => recipe with
    {
        Steps = Math.Max(recipe.Steps, warmupSteps + measuredSteps + 1),
        Checkpoint = recipe.Checkpoint with { Every = long.MaxValue },
        Eval = recipe.Eval with { Every = 0 },
    };

    private static double[] PhaseSums() => [.. Phases.Select(p => PretrainMetrics.StepPhaseSeconds.WithLabels(p).Sum)];

    public void Dispose() => _stop.Dispose();
}
