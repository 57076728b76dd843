using System.Text.Json;
using System.Text.Json.Serialization;

namespace Pretrain.Bench;

/// <summary>
/// What the measured steps of one run cost, as a child reports it to its parent on one line (<c>RESULT {json}</c>):
/// each step's wall time, the window's wall time (from the end of the last warm-up step to the end of the last
/// measured one), the step phases in ms per step (data, forward, backward, allreduce, optimizer: 0 where a loop
/// has no such phase) and the process's CPU time over the window; with overlap, also how long the gradient buckets were
/// being reduced per step and how much of that ran while backward went on (<see cref="Pretrain.Worker.Training.StepReport"/>).
/// </summary>
public sealed record StepWindow(double[] StepMs, double WallSeconds, double[] PhaseMs, CpuTimes Cpu,
    double GradientAllReduceMs = 0, double HiddenAllReduceMs = 0)
{
    /// <summary>The share of the gradient allreduce that ran behind backward; NaN when no gradient crossed the network.</summary>
    public double HiddenShare() => GradientAllReduceMs > 0 ? HiddenAllReduceMs / GradientAllReduceMs : double.NaN;

    private const string Prefix = "RESULT ";
    private static readonly JsonSerializerOptions Json = new() { NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals };

    public double MedianStepMs() => Median(StepMs);

    public double MeanStepMs() => WallSeconds * 1e3 / StepMs.Length;

    /// <summary>The loop's own time outside the timed phases, ms per step: the mean step less the phases.</summary>
    public double OtherMs() => MeanStepMs() - PhaseMs.Sum();

    /// <summary>Share of the window's wall time this process spent in user mode and in the kernel.</summary>
    public (double User, double System) CpuShare(int clockTicksPerSecond) =>
        (Cpu.UserTicks / (double)clockTicksPerSecond / WallSeconds, Cpu.SystemTicks / (double)clockTicksPerSecond / WallSeconds);

    public string ToLine() => Prefix + JsonSerializer.Serialize(this, Json);

    /// <summary>The window a <c>RESULT</c> line carries; null for any other line.</summary>
    public static StepWindow? Parse(string line) =>
        line.StartsWith(Prefix, StringComparison.Ordinal) ? JsonSerializer.Deserialize<StepWindow>(line[Prefix.Length..], Json) : null;

    public static double Median(IEnumerable<double> values)
    {
        var v = values.Order().ToArray();
        if (v.Length == 0) return double.NaN;
        return v.Length % 2 == 1 ? v[v.Length / 2] : (v[v.Length / 2 - 1] + v[v.Length / 2]) / 2;
    }
}
