using System.Globalization;
using YamlDotNet.RepresentationModel;

namespace Pretrain.Shared.Recipes;

/// <summary>
/// One YAML mapping read field by field. Every read names the dotted field path in its error, and
/// <see cref="RejectUnknown"/> turns any key nobody asked for into an "unknown field" error, so a typo
/// such as <c>warmup_step</c> fails on load instead of silently taking a default.
/// </summary>
internal sealed class YamlSection(string file, string path, YamlMappingNode node, SortedDictionary<string, string> values)
{
    private readonly HashSet<string> _read = new(StringComparer.Ordinal);

    /// <summary>
    /// Every value read so far, by dotted path, normalized (numbers in invariant round-trip form, defaults
    /// filled in) and shared by all sections of one file: what <see cref="RecipeHash"/> hashes.
    /// </summary>
    public IReadOnlyDictionary<string, string> Values => values;

    public static YamlSection Root(string file, string text)
    {
        var stream = YamlSyntax.Load(file, text);   // a syntax error names its line and field
        if (stream.Documents.Count == 0 || stream.Documents[0].RootNode is not YamlMappingNode map)
            throw new RecipeException(file, "(root)", "expected a mapping of fields such as `method: gpt`");
        return new YamlSection(file, "", map, new SortedDictionary<string, string>(StringComparer.Ordinal));
    }

    /// <summary>The mapping at <paramref name="key"/>, or an empty one when the key is absent (all its fields take their defaults).</summary>
    public YamlSection OptionalSection(string key) => Has(key) ? Section(key) : new YamlSection(file, Path(key), new YamlMappingNode(), values).Marked(this, key);

    private YamlSection Marked(YamlSection parent, string key)
    {
        parent._read.Add(key);
        return this;
    }

    /// <summary>Whether <paramref name="key"/> is present (reading it later still marks it known).</summary>
    public bool Has(string key) => node.Children.ContainsKey(new YamlScalarNode(key));

    /// <summary>Marks <paramref name="key"/> as known without reading it, so RejectUnknown lists it.</summary>
    public void Known(string key) => _read.Add(key);

    public YamlSection Section(string key) => Node(key) switch
    {
        YamlMappingNode map => new YamlSection(file, Path(key), map, values),
        var other => throw Wrong(key, other, "a mapping of fields"),
    };

    public string String(string key) => Record(key, Scalar(key, "a string"));

    /// <summary>One of <paramref name="allowed"/>, or a "did you mean" error listing them.</summary>
    public string Choice(string key, IReadOnlyList<string> allowed, string? fallback = null)
    {
        if (fallback is not null && !Has(key))
        {
            _read.Add(key);
            return Record(key, fallback);
        }
        var value = String(key);
        if (!allowed.Contains(value))
            throw Fail(key, $"'{value}' is not one of: {string.Join(", ", allowed)}");
        return value;
    }

    public string String(string key, string fallback) => Has(key) ? String(key) : Default(key, fallback);

    public long Long(string key, long min, long max, long fallback) => Has(key) ? Long(key, min, max) : Default(key, fallback);

    public int Int(string key, int min, int max, int fallback) => Has(key) ? Int(key, min, max) : Default(key, fallback);

    public double Double(string key, double min, double max, double fallback, bool minExclusive = false) =>
        Has(key) ? Double(key, min, max, minExclusive) : Default(key, fallback);

    public bool Bool(string key, bool fallback)
    {
        if (!Has(key)) return Default(key, fallback);
        var text = Scalar(key, "true or false");
        return text switch
        {
            "true" => Record(key, true),
            "false" => Record(key, false),
            _ => throw Fail(key, $"expected true or false, got '{text}'"),
        };
    }

    public double[] Doubles(string key, int count, double min, double max, double[] fallback) =>
        Has(key) ? Doubles(key, count, min, max) : Default(key, fallback);

    public long Long(string key, long min, long max = long.MaxValue)
    {
        var text = Scalar(key, "an integer");
        if (!long.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var value))
            throw Fail(key, $"expected an integer, got '{text}'");
        return Record(key, InRange(key, value, min, max));
    }

    public int Int(string key, int min, int max = int.MaxValue) => (int)Long(key, min, max);

    public double Double(string key, double min, double max, bool minExclusive = false)
    {
        var text = Scalar(key, "a number");
        if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) || !double.IsFinite(value))
            throw Fail(key, $"expected a number, got '{text}'");
        return Record(key, InRange(key, value, min, max, minExclusive));
    }

    public double[] Doubles(string key, int count, double min, double max)
    {
        if (Node(key) is not YamlSequenceNode seq || seq.Children.Count != count)
            throw Fail(key, $"expected a list of {count} numbers, such as [0.9, 0.95]");
        var numbers = new double[count];
        for (var i = 0; i < count; i++)
        {
            var text = (seq.Children[i] as YamlScalarNode)?.Value;
            if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out numbers[i]))
                throw Fail($"{key}[{i}]", $"expected a number, got '{text}'");
            InRange($"{key}[{i}]", numbers[i], min, max, minExclusive: false, maxExclusive: true);
        }
        return Record(key, numbers);
    }

    /// <summary>Fails on the first key that no Read call consumed.</summary>
    public void RejectUnknown()
    {
        foreach (var (key, _) in node.Children)
        {
            if (key is not YamlScalarNode scalar)
                throw new RecipeException(file, path.Length == 0 ? "(root)" : path,
                    $"line {key.Start.Line}: expected a field name before the colon, got a {key.NodeType.ToString().ToLowerInvariant()} (`? ...` or `[a, b]: ...`)");
            var name = scalar.Value ?? "";
            if (!_read.Contains(name))
                throw Fail(name, $"unknown field (line {key.Start.Line}); expected one of: {string.Join(", ", _read)}");
        }
    }

    public RecipeException Fail(string key, string problem) => new(file, Path(key), problem);

    /// <summary>Fails when the section is present: it belongs to another method.</summary>
    public void Forbid(string key, string reason)
    {
        _read.Add(key);
        if (Has(key))
            throw Fail(key, reason);
    }

    private T Default<T>(string key, T fallback)
    {
        _read.Add(key);
        return Record(key, fallback);
    }

    private T Record<T>(string key, T value)
    {
        values[Path(key)] = value switch
        {
            double d => Number(d),
            double[] list => string.Join(",", list.Select(Number)),
            bool b => b ? "true" : "false",
            _ => Convert.ToString(value, CultureInfo.InvariantCulture) ?? "",
        };
        return value;
    }

    private static string Number(double d) => d.ToString("R", CultureInfo.InvariantCulture);

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
