namespace Pretrain.Worker.Methods.Bootstrap;

/// <summary>
/// BYOL's target decay rate (Grill et al. 2020, §3.2): τ_k = 1 − (1 − τ_base)·(cos(πk/K) + 1)/2 after step k of
/// K. It starts at τ_base — the target trails the online network by roughly 1/(1 − τ_base) steps, 100 at 0.99 —
/// and rises on a cosine to 1, so the target settles as the learning rate decays to its floor.
/// <para>
/// A pure function of (τ_base, k, K): the schedule's position is the step, which every checkpoint and every
/// state broadcast already carries, so a resumed or regrouped run applies the same τ at the same step without
/// state of its own.
/// </para>
/// </summary>
public static class ByolMomentum
{
    /// <param name="baseMomentum">τ_base, in [0, 1] (<c>byol.momentum_base</c>).</param>
    /// <param name="step">k: the step just applied, 0 for the first (what <see cref="IPretrainingMethod.AfterUpdate"/> gets).</param>
    /// <param name="totalSteps">K: the recipe's <c>steps</c>, which the LR schedule spans too.</param>
    public static double At(double baseMomentum, long step, long totalSteps)
    {
        if (baseMomentum is < 0 or > 1)
            throw new ArgumentOutOfRangeException(nameof(baseMomentum), baseMomentum, "τ_base must be in [0, 1]");
        if (totalSteps < 1)
            throw new ArgumentOutOfRangeException(nameof(totalSteps), totalSteps, "a schedule spans at least one step");
        var progress = Math.Clamp((double)step / totalSteps, 0, 1);
        return 1 - (1 - baseMomentum) * (Math.Cos(Math.PI * progress) + 1) / 2;
    }
}
