using System.Diagnostics;

namespace Pretrain.Worker.Telemetry;

/// <summary>
/// What a timeline event is. The kind decides the event's name, its category and its track: the training
/// thread's work on track 0, the collectives on track 1 (they run on pool threads, one at a time per
/// communicator, so they never overlap on their track), and each step's gradient allreduce as a whole on
/// track 2 (from its first bucket's start to its last one's end, beside the backward phase it overlaps).
/// </summary>
public enum TraceKind : byte
{
    // Step phases, as pretrain_step_phase_seconds{phase} labels them.
    Data, Forward, Backward, AllReduce, Optimizer,
    // The rest of the training thread's time: adopting a replica at a generation's start, rank 0's checkpoint save, evaluation.
    Adopt, Checkpoint, Eval,
    // Collectives through the communicator, with their payload in bytes.
    AllReduceCall, AllGatherCall, BroadcastCall,
    // A step's gradient buckets, from the first one's start to the last one's end, with the step.
    GradientAllReduce,
    // An instant: this worker took a rank in a new generation.
    Generation,
    // A counter written by the recorder: events dropped because the buffer was full.
    Dropped,
}

/// <summary>
/// One timeline event as the training and collective threads record it: a struct of numbers, no strings, so
/// recording allocates nothing; the background writer turns it into JSON. Times are
/// <see cref="Stopwatch.GetTimestamp"/> values, mapped to Unix time by <see cref="TraceClock"/> when written.
/// </summary>
/// <param name="Value">The step (phases, adopt, checkpoint, eval), the payload bytes (collectives), the world size (generation) or the dropped count.</param>
/// <param name="Generation">The rendezvous generation of a collective or a generation event; -1 otherwise.</param>
/// <param name="Rank">This worker's rank in that generation; -1 otherwise.</param>
/// <param name="Failed">A collective that ended with an error (a lost peer, a timeout).</param>
public readonly record struct TraceEvent(TraceKind Kind, long Start, long End, long Value, long Generation = -1, int Rank = -1, bool Failed = false)
{
    /// <summary>The track (Chrome trace "tid") of a kind: 1 for collectives, 2 for a step's gradient allreduce, 0 for the training thread.</summary>
    public static int TrackOf(TraceKind kind) => kind switch
    {
        TraceKind.AllReduceCall or TraceKind.AllGatherCall or TraceKind.BroadcastCall => 1,
        TraceKind.GradientAllReduce => 2,
        _ => 0,
    };
}

/// <summary>
/// Maps <see cref="Stopwatch"/> timestamps to Unix time in nanoseconds, so that the events of every worker
/// process on one machine share one time axis: each process reads the wall clock once, when its recorder
/// opens, and counts from there on the monotonic stopwatch (a wall clock read per event could jump with an
/// NTP step). Two processes agree to within the wall clock's resolution (100 ns ticks) plus the drift of
/// their stopwatches from the wall clock over the run (NTP slews by at most 500 ppm: 0.5 ms a second in
/// the worst case, far less in practice). Across machines the trace is only as aligned as their clocks.
/// </summary>
public sealed class TraceClock
{
    private readonly long _origin = Stopwatch.GetTimestamp();
    private readonly long _originUnixNanoseconds = (DateTime.UtcNow - DateTime.UnixEpoch).Ticks * 100;
    private readonly double _nanosecondsPerTick = 1e9 / Stopwatch.Frequency;

    /// <summary>Nanoseconds since 1970-01-01 UTC of a <see cref="Stopwatch.GetTimestamp"/> value (exact to the nanosecond for runs of up to ~100 days).</summary>
    public long UnixNanoseconds(long timestamp) => _originUnixNanoseconds + (long)Math.Round((timestamp - _origin) * _nanosecondsPerTick);
}
