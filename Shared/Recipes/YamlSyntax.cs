using YamlDotNet.Core;
using YamlDotNet.Core.Events;
using YamlDotNet.RepresentationModel;

namespace Pretrain.Shared.Recipes;

/// <summary>
/// Loads a recipe's YAML so that every syntax error is a <see cref="RecipeException"/> naming the line and the
/// field. The text's events are read once first, tracking the keys and the open collections, because
/// YamlDotNet 18.1 reports some errors with no position at all: an unclosed flow collection (<c>width: [64</c>)
/// ends in a bare InvalidOperationException from its scanner, often before the parser has even reported the
/// <c>[</c> (the scanner looks ahead while the bracket could still be a key). So on failure the text after the
/// last event is read for a <c>[</c> or <c>{</c> its own line leaves open.
/// </summary>
internal static class YamlSyntax
{
    /// <summary>One collection open at this point of the text.</summary>
    private sealed class Open(bool mapping, bool flow, Mark start, string field)
    {
        public bool Mapping { get; } = mapping;
        public bool Flow { get; } = flow;
        public Mark Start { get; } = start;
        public string Field { get; } = field;              // dotted path of the field this collection is the value of
        public bool ExpectKey { get; set; } = true;        // a mapping alternates key, value
        public string? Key { get; set; }                   // the mapping's latest key
        public Dictionary<string, long> KeyLines { get; } = new(StringComparer.Ordinal);
        public int Items { get; set; }                     // a sequence's items so far
    }

    /// <summary>A key read so far: where it starts and its dotted path.</summary>
    private readonly record struct Key(long Line, long Column, string Path);

    public static YamlStream Load(string file, string text)
    {
        var open = new Stack<Open>();
        var keys = new List<Key>();
        var last = Mark.Empty;   // end of the last event the parser produced
        try
        {
            var parser = new Parser(new StringReader(text));
            while (parser.MoveNext())
            {
                var next = parser.Current!;
                last = next.End;
                if (next is MappingEnd or SequenceEnd)
                    open.TryPop(out _);
                else if (next is NodeEvent or AnchorAlias)
                {
                    var field = Place(file, open, keys, next);
                    if (next is MappingStart m) open.Push(new Open(true, m.Style == MappingStyle.Flow, m.Start, field));
                    else if (next is SequenceStart s) open.Push(new Open(false, s.Style == SequenceStyle.Flow, s.Start, field));
                }
            }
            var stream = new YamlStream();
            stream.Load(new StringReader(text));
            return stream;
        }
        catch (Exception e) when (e is not (RecipeException or OutOfMemoryException))
        {
            // The text is in memory: whatever YamlDotNet throws is its reaction to the text, a user error.
            var lines = text.Split('\n').Select(l => l.TrimEnd('\r')).ToArray();
            var flow = open.FirstOrDefault(o => o.Flow);
            var origin = flow?.Start ?? last;
            var upTo = e is YamlException { Start: var at } && !at.Equals(Mark.Empty) ? at.Line : long.MaxValue;
            if (UnclosedOpener(lines, origin, upTo) is { } unclosed)
            {
                var (line, column) = unclosed;
                char opener = lines[line - 1][column - 1];
                char closer = opener == '[' ? ']' : '}';
                throw new RecipeException(file, FieldAt(keys, line, column),
                    $"line {line}: `{Shown(lines[line - 1])}` opens a {opener} that is never closed; " +
                    $"expected a {closer} after its last item on the same line, as in `[64, 128]` or `{{a: 1}}`");
            }
            if (e is YamlException y)
            {
                var where = y.Start.Equals(Mark.Empty) ? last : y.Start;
                throw new RecipeException(file, FieldAt(keys, where.Line, where.Column), $"line {where.Line}: not valid YAML: {y.Message}");
            }
            var near = last.Line >= 1 && last.Line <= lines.Length ? $" after `{Shown(lines[(int)last.Line - 1])}`" : "";
            throw new RecipeException(file, FieldAt(keys, long.MaxValue, long.MaxValue),
                $"line {last.Line}: not valid YAML{near} (YamlDotNet stopped with {e.GetType().Name}); expected `field: value` lines, lists as [a, b]");
        }
    }

    /// <summary>Where node event <paramref name="e"/> sits in its parent: the dotted field it names or fills. Records keys; refuses a repeated one.</summary>
    private static string Place(string file, Stack<Open> open, List<Key> keys, ParsingEvent e)
    {
        if (!open.TryPeek(out var parent))
            return "";   // a document's root
        if (!parent.Mapping)
            return $"{parent.Field}[{parent.Items++}]";
        if (!parent.ExpectKey)
        {
            parent.ExpectKey = true;
            return Join(parent.Field, parent.Key ?? "?");
        }
        parent.ExpectKey = false;
        var key = e is Scalar { Value: var name } ? name : "?";   // a complex key: YamlSection refuses it by its line
        parent.Key = key;
        var path = Join(parent.Field, key);
        if (e is Scalar && !parent.KeyLines.TryAdd(key, e.Start.Line))
            throw new RecipeException(file, path, $"line {e.Start.Line}: given twice (first on line {parent.KeyLines[key]}); a field may appear once");
        keys.Add(new Key(e.Start.Line, e.Start.Column, path));
        return path;
    }

    private static string Join(string field, string key) => field.Length == 0 ? key : $"{field}.{key}";

    /// <summary>The field of the last key that starts at or before (line, column).</summary>
    private static string FieldAt(List<Key> keys, long line, long column)
    {
        for (var i = keys.Count - 1; i >= 0; i--)
            if (keys[i].Line < line || (keys[i].Line == line && keys[i].Column <= column))
                return keys[i].Path;
        return "(root)";
    }

    /// <summary>
    /// The first <c>[</c> or <c>{</c> at or after <paramref name="origin"/> (up to line <paramref name="upTo"/>) that its
    /// own line leaves open, as a 1-based (line, column); null when every line closes what it opens.
    /// </summary>
    private static (int Line, int Column)? UnclosedOpener(string[] lines, Mark origin, long upTo)
    {
        var first = (int)Math.Clamp(origin.Line, 1, lines.Length + 1);
        for (var line = first; line <= lines.Length && line <= upTo; line++)
        {
            var start = line == first ? (int)Math.Clamp(origin.Column - 1, 0, lines[line - 1].Length) : 0;
            var column = Scan(lines[line - 1], start).Unclosed;
            if (column >= 0)
                return (line, column + 1);
        }
        return null;
    }

    /// <summary>A line without its comment, trimmed, as the user wrote it.</summary>
    private static string Shown(string line) => line[..Scan(line, 0).Comment].Trim();

    /// <summary>
    /// Reads one line from <paramref name="start"/>, skipping quoted text: where its comment starts (or its length)
    /// and the 0-based column of the outermost <c>[</c> or <c>{</c> it leaves open (or -1).
    /// </summary>
    private static (int Comment, int Unclosed) Scan(string line, int start)
    {
        char quote = '\0';
        int depth = 0, opened = -1;
        for (var i = start; i < line.Length; i++)
        {
            var c = line[i];
            if (quote != '\0')
            {
                if (c == '\\' && quote == '"') i++;
                else if (c == quote && quote == '\'' && i + 1 < line.Length && line[i + 1] == '\'') i++;   // '' inside '…'
                else if (c == quote) quote = '\0';
                continue;
            }
            var startsToken = i == 0 || char.IsWhiteSpace(line[i - 1]) || line[i - 1] is '[' or '{' or ',';
            if (c == '#' && (i == 0 || char.IsWhiteSpace(line[i - 1])))
                return (i, depth > 0 ? opened : -1);
            if ((c is '\'' or '"') && startsToken)
                quote = c;
            else if ((c is '[' or '{') && (startsToken || depth > 0))
            {
                if (depth++ == 0) opened = i;
            }
            else if ((c is ']' or '}') && depth > 0)
                depth--;
        }
        return (line.Length, depth > 0 ? opened : -1);
    }
}
