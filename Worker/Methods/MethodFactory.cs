using Pretrain.Worker.Methods.Language;

namespace Pretrain.Worker.Methods;

/// <summary>The recipe's method, by name (RecipeLoader.Methods).</summary>
public static class MethodFactory
{
    public static IPretrainingMethod Create(MethodContext context) => context.Recipe.Method switch
    {
        "gpt" => new CausalLmMethod(context),
        var other => throw new NotSupportedException($"method '{other}' is not built into this worker yet"),
    };
}
