using System.Globalization;
using YamlDotNet.RepresentationModel;

namespace Pretrain.Shared.Recipes;

/// <summary>
/// One YAML mapping read field by field. Every read names the dotted field path in its error, and
/// <see cref="RejectUnknown"/> turns any key nobody asked for into an "unknown field" error, so a typo
/// such as <c>warmup_step</c> fails on load instead of silently taking a default.
/// </summary>
internal sealed class YamlSection(string file, string path, YamlMappingNode node)
{
    private readonly HashSet<string> _read = new(StringComparer.Ordinal);

    public static YamlSection Root(string file, string text)
    {
        var stream = new YamlStream();
        try { stream.Load(new StringReader(text)); }
        catch (YamlDotNet.Core.YamlException e)
        {
            throw new RecipeException(file, $"line {e.Start.Line}", $"not valid YAML: {e.Message}");
        }
        if (stream.Documents.Count == 0 || stream.Documents[0].RootNode is not YamlMappingNode map)
            throw new RecipeException(file, "(root)", "expected a mapping of fields such as `method: gpt`");
        return new YamlSection(file, "", map);
    }

    public YamlSection Section(string key) => Node(key) switch
    {
        YamlMappingNode map => new YamlSection(file, Path(key), map),
        var other => throw Wrong(key, other, "a mapping of fields"),
    };

    public string String(string key) => Scalar(key, "a string");

    public long Long(string key, long min, long max = long.MaxValue)
    {
        var text = Scalar(key, "an integer");
        if (!long.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var value))
            throw Fail(key, $"expected an integer, got '{text}'");
        return InRange(key, value, min, max);
    }

    public int Int(string key, int min, int max = int.MaxValue) => (int)Long(key, min, max);

    public double Double(string key, double min, double max, bool minExclusive = false)
    {
        var text = Scalar(key, "a number");
        if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) || !double.IsFinite(value))
            throw Fail(key, $"expected a number, got '{text}'");
        return InRange(key, value, min, max, minExclusive);
    }

    public double[] Doubles(string key, int count, double min, double max)
    {
        if (Node(key) is not YamlSequenceNode seq || seq.Children.Count != count)
            throw Fail(key, $"expected a list of {count} numbers, such as [0.9, 0.95]");
        var values = new double[count];
        for (var i = 0; i < count; i++)
        {
            var text = (seq.Children[i] as YamlScalarNode)?.Value;
            if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out values[i]))
                throw Fail($"{key}[{i}]", $"expected a number, got '{text}'");
            InRange($"{key}[{i}]", values[i], min, max, minExclusive: false, maxExclusive: true);
        }
        return values;
    }

    /// <summary>Fails on the first key that no Read call consumed.</summary>
    public void RejectUnknown()
    {
        foreach (var (key, _) in node.Children)
        {
            var name = ((YamlScalarNode)key).Value ?? "";
            if (!_read.Contains(name))
                throw Fail(name, $"unknown field (line {key.Start.Line}); expected one of: {string.Join(", ", _read)}");
        }
    }

    public RecipeException Fail(string key, string problem) => new(file, Path(key), problem);

    private T InRange<T>(string key, T value, T min, T max, bool minExclusive = false, bool maxExclusive = false)
        where T : IComparable<T>
    {
        var low = minExclusive ? value.CompareTo(min) <= 0 : value.CompareTo(min) < 0;
        var high = maxExclusive ? value.CompareTo(max) >= 0 : value.CompareTo(max) > 0;
        if (low || high)
            throw Fail(key, $"{value} is out of range {(minExclusive ? "(" : "[")}{min}, {max}{(maxExclusive ? ")" : "]")}");
        return value;
    }

    private string Scalar(string key, string expected) => Node(key) switch
    {
        YamlScalarNode { Value: { } v } => v,
        var other => throw Wrong(key, other, expected),
    };

    private YamlNode Node(string key)
    {
        _read.Add(key);
        if (node.Children.TryGetValue(new YamlScalarNode(key), out var child)) return child;
        // A missing field next to an unknown one is almost always a typo: name the typo, not the gap.
        foreach (var (other, _) in node.Children)
            if (other is YamlScalarNode { Value: { } name } && !_read.Contains(name) && EditDistance(name, key) <= 2)
                throw Fail(name, $"unknown field (line {other.Start.Line}); did you mean '{key}'?");
        throw Fail(key, "missing required field");
    }

    private static int EditDistance(string a, string b)
    {
        var row = Enumerable.Range(0, b.Length + 1).ToArray();
        for (var i = 1; i <= a.Length; i++)
        {
            var diagonal = row[0];
            row[0] = i;
            for (var j = 1; j <= b.Length; j++)
            {
                var above = row[j];
                row[j] = Math.Min(Math.Min(row[j] + 1, row[j - 1] + 1), diagonal + (a[i - 1] == b[j - 1] ? 0 : 1));
                diagonal = above;
            }
        }
        return row[b.Length];
    }

    private RecipeException Wrong(string key, YamlNode got, string expected) =>
        Fail(key, $"expected {expected}, got a {got.NodeType.ToString().ToLowerInvariant()} (line {got.Start.Line})");

    private string Path(string key) => path.Length == 0 ? key : $"{path}.{key}";
}
