using Pretrain.Worker.Methods.Bootstrap;
using Pretrain.Worker.Methods.Contrastive;
using Pretrain.Worker.Methods.Language;
using Pretrain.Worker.Methods.Reconstruction;

namespace Pretrain.Worker.Methods;

/// <summary>The recipe's method, by name (RecipeLoader.Methods).</summary>
public static class MethodFactory
{
    private static readonly Lock Initialisation = new();

    /// <summary>
    /// Builds <paramref name="make"/> with libtorch's global generator seeded by <paramref name="seed"/>, one
    /// build at a time per process, so modules whose initialisers draw from it come out the same every run.
    /// </summary>
    public static T Seeded<T>(long seed, Func<T> make)
    {
        lock (Initialisation)
        {
            TorchSharp.torch.manual_seed(seed);
            return make();
        }
    }

    public static IPretrainingMethod Create(MethodContext context) => context.Recipe.Method switch
    {
        "gpt" => new CausalLmMethod(context),
        "bert" => new MaskedLmMethod(context),
        "simclr" => new SimClrMethod(context),
        "moco" => new MoCoMethod(context),
        "byol" => new ByolMethod(context),
        "mae" => new MaeMethod(context),
        var other => throw new NotSupportedException($"method '{other}' is not built into this worker yet"),
    };
}
