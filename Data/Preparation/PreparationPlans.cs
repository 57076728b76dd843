namespace Pretrain.Data.Preparation;

/// <summary>Builds the plan for a <see cref="PrepareSpec"/>; the same spec gives the same tasks in every process.</summary>
public static class PreparationPlans
{
    public static readonly IReadOnlyList<string> Kinds = ["text", "fashion-mnist", "cifar10", "images"];

    public static IPreparationPlan Create(PrepareSpec spec) => spec.Kind switch
    {
        "text" => TextPreparationPlan.Create(spec),
        "fashion-mnist" or "cifar10" or "images" => ImagePreparationPlan.Create(spec),
        _ => throw new InvalidDataException($"prepare: unknown kind '{spec.Kind}'; expected one of {string.Join(", ", Kinds)}"),
    };
}
