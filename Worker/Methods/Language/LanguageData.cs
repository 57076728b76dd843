using Pretrain.Data;
using Pretrain.Data.Text;
using Pretrain.Shared.Recipes;

namespace Pretrain.Worker.Methods.Language;

/// <summary>The token corpus a text recipe names: a raw UTF-8 file (bytes as tokens) or a folder of `pretrain prepare text` shards.</summary>
internal static class LanguageData
{
    public static ITokenCorpus Open(Recipe recipe) => recipe.Data switch
    {
        TextData text => new ByteTextCorpus(text.TextPath, recipe.Transformer.Context, text.ValidationFraction),
        TokenData tokens => new PreparedTextCorpus(tokens.TokensPath, recipe.Transformer.Context),
        var other => throw new ArgumentException($"{recipe.Method} trains on text, not {other.GetType().Name}"),
    };
}
