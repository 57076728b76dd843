using Pretrain.Worker.Training;
using Xunit;

namespace Pretrain.Tests.Training;

public class LrScheduleTests
{
    private static readonly LrSchedule Schedule = new(Lr: 1e-3, MinLr: 1e-4, WarmupSteps: 4, TotalSteps: 24);

    [Fact]
    public void Warmup_rises_linearly_and_never_starts_at_zero()
    {
        Assert.Equal(1e-3 * 1 / 5, Schedule.At(0), 12);
        Assert.Equal(1e-3 * 4 / 5, Schedule.At(3), 12);
    }

    [Fact]
    public void Cosine_starts_at_lr_passes_the_midpoint_and_ends_at_min_lr()
    {
        Assert.Equal(1e-3, Schedule.At(4), 12);
        Assert.Equal((1e-3 + 1e-4) / 2, Schedule.At(14), 12); // halfway through the 20 decay steps
        Assert.Equal(1e-4, Schedule.At(24), 12);
        Assert.Equal(1e-4, Schedule.At(1000), 12);
    }

    [Fact]
    public void Decay_is_monotonic_after_warmup()
    {
        for (var s = 4; s < 24; s++)
            Assert.True(Schedule.At(s + 1) <= Schedule.At(s));
    }
}
