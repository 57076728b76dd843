namespace Pretrain.Shared.Recipes;

/// <summary>A recipe is invalid. The message names the file and the field (dotted path, e.g. <c>optimizer.lr</c>).</summary>
public sealed class RecipeException(string file, string field, string problem)
    : Exception($"{file}: {field}: {problem}")
{
    public string File { get; } = file;
    public string Field { get; } = field;
    public string Problem { get; } = problem;
}
