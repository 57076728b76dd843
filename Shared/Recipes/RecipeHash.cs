using System.Globalization;
using System.IO.Hashing;
using System.Text;

namespace Pretrain.Shared.Recipes;

/// <summary>
/// The recipe's identity: xxHash64 of its normalized text — one <c>field.path=value</c> line per field
/// the loader read, sorted by path, numbers in invariant round-trip form and omitted optional fields
/// filled with their defaults. Comments, key order, quoting, blank lines and spelling out a default do
/// not change it; any value that changes the training does. Data paths are hashed as written (not
/// resolved), so moving a run directory keeps the hash.
/// </summary>
public static class RecipeHash
{
    public static string Of(IReadOnlyDictionary<string, string> values) => Hex(Encoding.UTF8.GetBytes(Normalize(values)));

    public static string Normalize(IReadOnlyDictionary<string, string> values)
    {
        var text = new StringBuilder();
        foreach (var (key, value) in values.OrderBy(v => v.Key, StringComparer.Ordinal))
            text.Append(key).Append('=').Append(value).Append('\n');
        return text.ToString();
    }

    /// <summary>xxHash64 of <paramref name="bytes"/> as 16 lowercase hex digits (the project's checksum format).</summary>
    public static string Hex(ReadOnlySpan<byte> bytes) => XxHash64.HashToUInt64(bytes).ToString("x16", CultureInfo.InvariantCulture);
}
