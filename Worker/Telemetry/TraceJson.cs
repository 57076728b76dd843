using System.Buffers;
using System.Text.Json;

namespace Pretrain.Worker.Telemetry;

/// <summary>
/// Writes timeline events in the Trace Event Format (the JSON that chrome://tracing and Perfetto read), one
/// event object per line, into a reusable buffer the recorder copies to its file. The lines form the format's
/// "JSON array" form: <c>[</c>, the events separated by commas, <c>]</c> — and the format lets the closing
/// <c>]</c> be missing, so the file of a process that was killed still opens. Times are microseconds since
/// the Unix epoch with three decimals (nanoseconds), written as decimals so that no exponent appears.
/// </summary>
/// <remarks>
/// Events: complete events (<c>"ph":"X"</c>, <c>ts</c> and <c>dur</c>) for phases and collectives, an instant
/// (<c>"ph":"i"</c>) when the worker takes a rank, a counter (<c>"ph":"C"</c>) of dropped events, and metadata
/// (<c>"ph":"M"</c>) naming the process (the worker id) and its three tracks. Only this writer's thread uses it.
/// </remarks>
internal sealed class TraceJson : IDisposable
{
    private static readonly JsonEncodedText NameField = JsonEncodedText.Encode("name"), Category = JsonEncodedText.Encode("cat"),
        Phase = JsonEncodedText.Encode("ph"), Timestamp = JsonEncodedText.Encode("ts"), Duration = JsonEncodedText.Encode("dur"),
        Process = JsonEncodedText.Encode("pid"), Thread = JsonEncodedText.Encode("tid"), Arguments = JsonEncodedText.Encode("args"),
        Scope = JsonEncodedText.Encode("s");

    private readonly ArrayBufferWriter<byte> _buffer = new(1 << 16);   // ~150 bytes an event; grows to the largest batch once, then is reused
    private readonly Utf8JsonWriter _json;
    private readonly TraceClock _clock;
    private readonly int _pid;
    private bool _first = true;

    public TraceJson(int pid, TraceClock clock)
    {
        (_pid, _clock) = (pid, clock);
        _json = new Utf8JsonWriter(_buffer);
        _buffer.Write("[\n"u8);
    }

    /// <summary>The bytes written since the last <see cref="Clear"/>.</summary>
    public ReadOnlySpan<byte> Written => _buffer.WrittenSpan;

    public void Clear() => _buffer.ResetWrittenCount();

    /// <summary>Ends the array (a complete JSON document).</summary>
    public void Close() => _buffer.Write("\n]\n"u8);

    /// <summary>The metadata that labels this process and its tracks in the viewer, sorted by <paramref name="pid"/>.</summary>
    public void Labels(string processName)
    {
        Metadata("process_name", 0, "name", processName);
        Begin();
        _json.WriteStartObject();
        _json.WriteString(NameField, "process_sort_index");
        _json.WriteString(Phase, "M");
        _json.WriteNumber(Process, _pid);
        _json.WriteNumber(Thread, 0);
        _json.WriteStartObject(Arguments);
        _json.WriteNumber("sort_index", _pid);
        _json.WriteEndObject();
        End();
        Metadata("thread_name", 0, "name", "training");
        Metadata("thread_name", 1, "name", "collectives");
        Metadata("thread_name", 2, "name", "gradients");
    }

    public void Event(in TraceEvent e)
    {
        Begin();
        _json.WriteStartObject();
        _json.WriteString(NameField, NameOf(e.Kind));
        _json.WriteString(Category, CategoryOf(e.Kind));
        long start = _clock.UnixNanoseconds(e.Start);
        switch (e.Kind)
        {
            case TraceKind.Generation:
                _json.WriteString(Phase, "i");
                _json.WriteString(Scope, "t");
                break;
            case TraceKind.Dropped:
                _json.WriteString(Phase, "C");
                break;
            default:
                _json.WriteString(Phase, "X");
                break;
        }
        _json.WriteNumber(Timestamp, start / 1000m);
        if (e.Kind is not (TraceKind.Generation or TraceKind.Dropped))
            _json.WriteNumber(Duration, Math.Max(0, _clock.UnixNanoseconds(e.End) - start) / 1000m);
        _json.WriteNumber(Process, _pid);
        _json.WriteNumber(Thread, TraceEvent.TrackOf(e.Kind));
        _json.WriteStartObject(Arguments);
        switch (e.Kind)
        {
            case TraceKind.AllReduceCall or TraceKind.AllGatherCall or TraceKind.BroadcastCall:
                _json.WriteNumber("bytes", e.Value);
                _json.WriteNumber("generation", e.Generation);
                _json.WriteNumber("rank", e.Rank);
                if (e.Failed) _json.WriteBoolean("failed", true);
                break;
            case TraceKind.Generation:
                _json.WriteNumber("generation", e.Generation);
                _json.WriteNumber("rank", e.Rank);
                _json.WriteNumber("world_size", e.Value);
                break;
            case TraceKind.Dropped:
                _json.WriteNumber("dropped", e.Value);
                break;
            default:
                _json.WriteNumber("step", e.Value);
                break;
        }
        _json.WriteEndObject();
        End();
    }

    /// <summary>The event's name: a phase as pretrain_step_phase_seconds labels it, a collective by its kind.</summary>
    public static string NameOf(TraceKind kind) => kind switch
    {
        TraceKind.Data => "data",
        TraceKind.Forward => "forward",
        TraceKind.Backward => "backward",
        TraceKind.AllReduce => "allreduce",
        TraceKind.Optimizer => "optimizer",
        TraceKind.Adopt => "adopt",
        TraceKind.Checkpoint => "checkpoint",
        TraceKind.Eval => "eval",
        TraceKind.AllReduceCall => "allreduce",
        TraceKind.AllGatherCall => "allgather",
        TraceKind.BroadcastCall => "broadcast",
        TraceKind.GradientAllReduce => "gradient_allreduce",
        TraceKind.Generation => "generation",
        TraceKind.Dropped => "trace_dropped_events",
        _ => kind.ToString(),
    };

    /// <summary>"step" for the phases of a step, "trainer" for the loop's other work, "collective", "generation", "trace".</summary>
    public static string CategoryOf(TraceKind kind) => kind switch
    {
        TraceKind.Data or TraceKind.Forward or TraceKind.Backward or TraceKind.AllReduce or TraceKind.Optimizer or TraceKind.GradientAllReduce => "step",
        TraceKind.Adopt or TraceKind.Checkpoint or TraceKind.Eval => "trainer",
        TraceKind.AllReduceCall or TraceKind.AllGatherCall or TraceKind.BroadcastCall => "collective",
        TraceKind.Generation => "generation",
        _ => "trace",
    };

    private void Metadata(string name, int tid, string key, string value)
    {
        Begin();
        _json.WriteStartObject();
        _json.WriteString(NameField, name);
        _json.WriteString(Phase, "M");
        _json.WriteNumber(Process, _pid);
        _json.WriteNumber(Thread, tid);
        _json.WriteStartObject(Arguments);
        _json.WriteString(key, value);
        _json.WriteEndObject();
        End();
    }

    // One event a line: the separator goes straight into the buffer between two root objects, and the writer is
    // reset after each (a Utf8JsonWriter writes a single JSON value; a second one would get a comma of its own).
    private void Begin()
    {
        if (!_first) _buffer.Write(",\n"u8);
        _first = false;
    }

    private void End()
    {
        _json.WriteEndObject();
        _json.Flush();
        _json.Reset();
    }

    public void Dispose() => _json.Dispose();
}
