namespace Pretrain.Worker.Training;

/// <summary>
/// nanoGPT's <c>get_lr(it)</c>, a pure function of the step: linear warmup over the first
/// <c>warmupSteps</c> steps (step s gets lr·(s+1)/(warmup+1), so step 0 is never 0), then cosine decay
/// from lr to minLr, reaching minLr at <c>totalSteps</c> (the recipe's `steps`, never --max-steps).
/// </summary>
public sealed record LrSchedule(double Lr, double MinLr, long WarmupSteps, long TotalSteps)
{
    public double At(long step)
    {
        if (step < WarmupSteps)
            return Lr * (step + 1) / (WarmupSteps + 1);
        if (step >= TotalSteps)
            return MinLr;
        var ratio = (double)(step - WarmupSteps) / Math.Max(1, TotalSteps - WarmupSteps); // 0 → 1
        var coefficient = 0.5 * (1 + Math.Cos(Math.PI * ratio));                          // 1 → 0
        return MinLr + coefficient * (Lr - MinLr);
    }
}
