using System.Text;
using System.Text.Json;

namespace Pretrain.Worker.Telemetry;

/// <summary>
/// Joins the traces of several worker processes (each a <see cref="TraceRecorder"/> file) into one Chrome
/// trace, <c>{"displayTimeUnit":"ms","traceEvents":[…]}</c>: `pretrain local --trace FILE` does this when its
/// workers have exited. Every worker labels its own process and timestamps in Unix microseconds, so joining is
/// concatenation. It streams line by line (a part holds one event a line), so memory stays flat for a long run;
/// a part whose worker was killed lacks its closing bracket and may end in a line cut short, which is skipped
/// and counted. The output is written beside itself and renamed, so a reader never sees half a trace.
/// </summary>
public static class TraceMerge
{
    /// <summary>What a merge found: part files read (missing ones are passed over), events written, lines skipped as cut short.</summary>
    public sealed record Result(int Files, long Events, long Skipped);

    public static Result Merge(IEnumerable<string> parts, string output)
    {
        string temporary = output + ".tmp";
        int files = 0;
        long events = 0, skipped = 0;
        try
        {
            using (var writer = new StreamWriter(temporary, append: false, new UTF8Encoding(encoderShouldEmitUTF8Identifier: false), bufferSize: 1 << 16))
            {
                writer.Write("{\"displayTimeUnit\":\"ms\",\"traceEvents\":[");
                foreach (string part in parts)
                {
                    if (!File.Exists(part)) continue;   // a worker that died before it opened its trace
                    files++;
                    foreach (string line in File.ReadLines(part))
                    {
                        if (EventOf(line) is not { } json)
                        {
                            if (!IsFraming(line)) skipped++;
                            continue;
                        }
                        writer.Write(events == 0 ? "\n" : ",\n");
                        writer.Write(json);
                        events++;
                    }
                }
                writer.Write("\n]}\n");
            }
            File.Move(temporary, output, overwrite: true);
        }
        catch
        {
            try { File.Delete(temporary); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            throw;
        }
        return new Result(files, events, skipped);
    }

    /// <summary>The event object on a line of a part (without its separating comma), or null: the array's brackets, a blank, or a line cut short.</summary>
    public static string? EventOf(string line)
    {
        var text = line.AsSpan().Trim();
        if (text.Length > 0 && text[^1] == ',') text = text[..^1];
        if (text.Length < 2 || text[0] != '{' || text[^1] != '}') return null;
        string json = text.ToString();
        try
        {
            using var document = JsonDocument.Parse(json);
            return document.RootElement.ValueKind == JsonValueKind.Object ? json : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    private static bool IsFraming(string line) => line.AsSpan().Trim() is "" or "[" or "]";
}
