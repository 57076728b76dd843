using System.Diagnostics;
using System.Globalization;
using Pretrain.Shared.IO;

namespace Pretrain.Worker.Telemetry;

/// <summary>
/// A worker's step timeline (<c>--trace FILE</c>), as Horovod's timeline: the training thread's phases and
/// every collective, written as a Chrome trace (<see cref="TraceJson"/>) that Perfetto and chrome://tracing open.
/// </summary>
/// <remarks>
/// Recording must not slow training: an event is a struct copied under a lock held for a few nanoseconds into
/// one of two preallocated buffers, so the training thread allocates nothing and never waits on the disk. A
/// background timer swaps the buffers once a second and writes the full one. When a buffer fills before the
/// writer comes round, further events are dropped and counted — training is never blocked and memory never
/// grows — and the count appears in the trace as a counter and in the log at the end. 16,384 events a second
/// is ~30× what a tiny GPT makes (50 steps a second, ~10 events a step); a ResNet with global batch norm
/// makes ~100 collectives a micro-step at a few steps a second. Two buffers of 48-byte events: 1.5 MB.
/// The file is closed (its JSON array ended) on <see cref="Dispose"/>; a process killed by SIGKILL loses the
/// events of its last second at most, and its file lacks the closing bracket, which the format allows.
/// Nothing here is static: each worker process owns one recorder, or none when tracing is off (a null check).
/// </remarks>
public sealed class TraceRecorder : IDisposable
{
    /// <summary>Events each of the two buffers holds: a second's worth of a busy worker many times over.</summary>
    public const int DefaultCapacity = 1 << 14;

    private readonly Lock _gate = new();      // the producers and the buffer swap
    private readonly Lock _writing = new();   // one flush at a time: the timer's and Dispose's
    private TraceEvent[] _filling, _draining;
    private int _count;
    private long _dropped, _droppedWritten, _written;
    private readonly FileStream _file;
    private readonly TraceJson _json;
    private readonly Timer _timer;
    private readonly Action<string> _log;
    private readonly int _capacity;
    private bool _closed, _failed;

    private TraceRecorder(string path, FileStream file, int pid, string processName, Action<string> log, int capacity, TimeSpan flushInterval)
    {
        Path = path;
        Pid = pid;
        (_file, _log, _capacity) = (file, log, capacity);
        _filling = new TraceEvent[capacity];
        _draining = new TraceEvent[capacity];
        _json = new TraceJson(pid, new TraceClock());
        _json.Labels(processName);
        lock (_writing) WriteBuffer();   // the labels at once: the file is a valid (open) trace from the start
        _timer = new Timer(_ => Flush(), null, flushInterval, flushInterval);
    }

    /// <summary>
    /// Creates (or replaces) <paramref name="path"/> and starts the writer. The process is labelled
    /// <paramref name="workerId"/> on the track numbered by <see cref="TrackOf"/>.
    /// </summary>
    /// <param name="log">Where a write error and the dropped-event count are reported.</param>
    /// <param name="flushInterval">How often the writer runs; <see cref="Timeout.InfiniteTimeSpan"/>: only on <see cref="Flush"/> (tests).</param>
    public static TraceRecorder Open(string path, string workerId, Action<string> log, int capacity = DefaultCapacity, TimeSpan? flushInterval = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        var file = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.Read, bufferSize: 1 << 16);
        try
        {
            return new TraceRecorder(path, file, TrackOf(workerId, Environment.ProcessId), workerId, log, capacity, flushInterval ?? TimeSpan.FromSeconds(1));
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The process number ("pid") of a worker in the trace: the number its id ends with (<c>worker-3</c> → 3, as
    /// `pretrain local` and Kubernetes' indexed pods name them), so the tracks sort by worker and a restarted
    /// worker continues its predecessor's track; otherwise <paramref name="processId"/>.
    /// </summary>
    public static int TrackOf(string workerId, int processId)
    {
        int digits = 0;
        while (digits < workerId.Length && char.IsAsciiDigit(workerId[workerId.Length - 1 - digits])) digits++;
        return digits > 0 && int.TryParse(workerId.AsSpan(workerId.Length - digits), NumberStyles.None, CultureInfo.InvariantCulture, out int number)
            ? number
            : processId;
    }

    /// <summary>The trace file.</summary>
    public string Path { get; }

    /// <summary>This process's number in the trace.</summary>
    public int Pid { get; }

    /// <summary>Events dropped so far because the buffer was full.</summary>
    public long Dropped { get { lock (_gate) return _dropped; } }

    /// <summary>Events written to the file so far.</summary>
    public long Written { get { lock (_writing) return _written; } }

    /// <summary>A span of the training thread (a phase, an adoption, a checkpoint, an evaluation) of step <paramref name="step"/>.</summary>
    public void Complete(TraceKind kind, long start, long end, long step) => Add(new TraceEvent(kind, start, end, step));

    /// <summary>A collective of <paramref name="bytes"/> from its start on the wire to its end.</summary>
    public void Collective(TraceKind kind, long start, long end, long bytes, long generation, int rank, bool failed) =>
        Add(new TraceEvent(kind, start, end, bytes, generation, rank, failed));

    /// <summary>This worker took rank <paramref name="rank"/> of <paramref name="worldSize"/> in <paramref name="generation"/>.</summary>
    public void GenerationStarted(long generation, int rank, int worldSize)
    {
        long now = Stopwatch.GetTimestamp();
        Add(new TraceEvent(TraceKind.Generation, now, now, worldSize, generation, rank));
    }

    private void Add(in TraceEvent e)
    {
        lock (_gate)
        {
            if (_count < _filling.Length) _filling[_count++] = e;
            else _dropped++;
        }
    }

    /// <summary>Writes what was recorded since the last flush (the timer calls this every second).</summary>
    public void Flush()
    {
        lock (_writing)
        {
            if (_closed) return;
            WriteBatch();
        }
    }

    private void WriteBatch()
    {
        TraceEvent[] batch;
        int count;
        long dropped;
        lock (_gate)
        {
            batch = _filling;
            (_filling, _draining) = (_draining, _filling);
            count = _count;
            dropped = _dropped;
            _count = 0;
        }
        if (_failed) return;   // the disk refused once: the events go nowhere rather than pile up
        for (int i = 0; i < count; i++) _json.Event(batch[i]);
        if (dropped > _droppedWritten)
        {
            long at = count > 0 ? batch[count - 1].End : Stopwatch.GetTimestamp();
            _json.Event(new TraceEvent(TraceKind.Dropped, at, at, dropped));
            _droppedWritten = dropped;
        }
        if (WriteBuffer()) _written += count;
    }

    /// <summary>Appends the serialised events to the file; on a file-system error says so once and stops writing.</summary>
    private bool WriteBuffer()
    {
        try
        {
            _file.Write(_json.Written);
            _file.Flush();
            return true;
        }
        catch (Exception e) when (IoErrors.IsFileSystem(e))
        {
            _failed = true;
            _log($"--trace {Path}: {IoErrors.Describe(e)}; the trace ends here ({_written} events written)");
            return false;
        }
        finally
        {
            _json.Clear();
        }
    }

    /// <summary>Writes what is left, ends the JSON array and closes the file. Events recorded later are ignored.</summary>
    public void Dispose()
    {
        _timer.Dispose();
        lock (_writing)
        {
            if (_closed) return;
            WriteBatch();
            if (!_failed)
            {
                _json.Close();
                WriteBuffer();
            }
            _closed = true;
            try { _file.Dispose(); }
            catch (Exception e) when (IoErrors.IsFileSystem(e)) { _log($"--trace {Path}: {IoErrors.Describe(e)} while closing it"); }
            _json.Dispose();
        }
        if (Dropped > 0)
            _log($"--trace {Path}: {Dropped} events were dropped because the writer fell behind (the buffer holds {_capacity} a second)");
    }
}
