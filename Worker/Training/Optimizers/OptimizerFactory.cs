using Pretrain.Shared.Recipes;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pretrain.Worker.Training.Optimizers;

/// <summary>The recipe's optimizer over a method's parameters, with the method's weight-decay exclusions.</summary>
public static class OptimizerFactory
{
    public static IOptimizer Create(OptimizerRecipe o, IEnumerable<(string Name, Parameter Parameter)> parameters,
        Func<string, Tensor, bool> decays) => o.Name switch
    {
        "adamw" => new AdamW(parameters, decays, o.Betas[0], o.Betas[1], o.Eps, o.WeightDecay),
        "lars" => new Lars(parameters, decays, o.Momentum, o.WeightDecay, o.Eta),
        "lamb" => new Lamb(parameters, decays, o.Betas[0], o.Betas[1], o.Eps, o.WeightDecay),
        "sgd" => new Sgd(parameters, decays, o.Momentum, o.WeightDecay),
        _ => throw new ArgumentException($"unknown optimizer '{o.Name}'"),
    };
}
