using System.Diagnostics;
using System.Text.Json;
using Pretrain.Tests.Cluster;
using Pretrain.Tests.Infrastructure;
using Pretrain.Worker.Collectives;
using Pretrain.Worker.Telemetry;
using Pretrain.Worker.Training;
using Xunit;
using static TorchSharp.torch;

namespace Pretrain.Tests.Telemetry;

/// <summary>The step timeline (--trace): a worker's trace file, the merge of several, and a real local run.</summary>
public sealed class TraceTests : IDisposable
{
    static IEnumerable<string> Phases => ["data", "forward", "backward", "allreduce", "optimizer"];

    readonly string _dir = Directory.CreateTempSubdirectory("pretrain-trace-").FullName;

    [Fact]
    public void Recorded_events_make_a_json_array_with_every_field_a_viewer_needs()
    {
        string path = PathOf("worker-0.json");
        using (var trace = Open(path, "worker-0")) RecordSteps(trace, 3);

        using var document = JsonDocument.Parse(File.ReadAllBytes(path));
        var events = Events(document);
        Assert.All(events, e =>
        {
            foreach (string field in new[] { "name", "ph", "pid", "tid", "args" })
                Assert.True(e.TryGetProperty(field, out _), $"no {field} in {e}");
            Assert.Equal(0, Pid(e));                                   // worker-0: its id's number
        });
        var spans = events.Where(e => Ph(e) == "X").ToList();
        Assert.Equal(3 * 6, spans.Count);                              // five phases and one allreduce a step
        Assert.All(spans, e =>
        {
            Assert.True(e.GetProperty("ts").GetDouble() > 0);
            Assert.True(e.GetProperty("dur").GetDouble() >= 0);
            Assert.NotEqual("", Cat(e));
        });
        foreach (string phase in Phases)
            Assert.Equal(new long[] { 1, 2, 3 }, spans.Where(e => Cat(e) == "step" && Name(e) == phase).Select(e => Arg(e, "step")));
        var allreduces = spans.Where(e => Cat(e) == "collective").ToList();
        Assert.Equal(3, allreduces.Count);
        Assert.All(allreduces, e =>
        {
            Assert.Equal("allreduce", Name(e));
            Assert.Equal(1, e.GetProperty("tid").GetInt32());
            Assert.Equal(4096L, Arg(e, "bytes"));
        });
        Assert.Contains(events, e => Ph(e) == "M" && Name(e) == "process_name" && e.GetProperty("args").GetProperty("name").GetString() == "worker-0");
        Assert.Contains(events, e => Ph(e) == "M" && Name(e) == "thread_name" && e.GetProperty("tid").GetInt32() == 0);
        Assert.Contains(events, e => Ph(e) == "M" && Name(e) == "thread_name" && e.GetProperty("tid").GetInt32() == 1);
        Assert.Contains(events, e => Ph(e) == "i" && Name(e) == "generation" && Arg(e, "world_size") == 2);
    }

    [Fact]
    public void Timestamps_are_unix_microseconds_that_never_go_back_on_a_track()
    {
        string path = PathOf("worker-1.json");
        double before = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() * 1000.0;
        using (var trace = Open(path, "worker-1"))
        {
            RecordSteps(trace, 2);
            trace.Flush();                                             // across two batches too
            RecordSteps(trace, 2);
        }
        double after = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() * 1000.0;

        using var document = JsonDocument.Parse(File.ReadAllBytes(path));
        var tracks = Events(document).Where(e => Ph(e) is "X" or "i").GroupBy(e => e.GetProperty("tid").GetInt32()).ToList();
        Assert.Equal(2, tracks.Count);
        foreach (var track in tracks)
        {
            var stamps = track.Select(e => e.GetProperty("ts").GetDouble()).ToList();
            // Microseconds since 1970 (not ms, not ns, not since boot), to a second's slack for a wall clock step.
            Assert.All(stamps, ts => Assert.InRange(ts, before - 1e6, after + 1e6));
            for (int i = 1; i < stamps.Count; i++)
                Assert.True(stamps[i] >= stamps[i - 1], $"track {track.Key}: event {i} at {stamps[i]} µs is before event {i - 1} at {stamps[i - 1]} µs");
        }
    }

    [Fact]
    public void A_full_buffer_drops_and_counts_events_instead_of_growing_or_blocking()
    {
        string path = PathOf("small.json");
        using (var trace = Open(path, "worker-2", capacity: 8))
        {
            for (int i = 0; i < 20; i++) trace.Complete(TraceKind.Forward, i, i + 1, step: i);
            Assert.Equal(12L, trace.Dropped);
            trace.Flush();
            Assert.Equal(8L, trace.Written);
            for (int i = 0; i < 5; i++) trace.Complete(TraceKind.Backward, 100 + i, 101 + i, step: i);   // room again once written
            trace.Flush();
            Assert.Equal(13L, trace.Written);
            Assert.Equal(12L, trace.Dropped);
        }

        using var document = JsonDocument.Parse(File.ReadAllBytes(path));
        var events = Events(document);
        Assert.Equal(13, events.Count(e => Ph(e) == "X"));
        var dropped = Assert.Single(events, e => Ph(e) == "C");
        Assert.Equal(12L, Arg(dropped, "dropped"));
    }

    [Fact]
    public async Task A_step_s_gradient_allreduce_is_a_span_of_the_gradients_track_and_its_hidden_share_a_metric()
    {
        string path = PathOf("gradients.json");
        var hiddenBefore = Pretrain.Shared.Telemetry.PretrainMetrics.GradientAllReduceSeconds.WithLabels("hidden").Count;
        using (var trace = Open(path, "worker-0"))
        {
            using var scope = NewDisposeScope();
            using var chain = new Pretrain.Tests.Training.Chain();
            using var buckets = chain.Buckets(chain.M1, chain.M2, chain.M3);
            var phases = new StepPhases(trace);
            phases.Start(7);
            buckets.Arm(new Pretrain.Tests.Training.RecordingCommunicator(), CancellationToken.None);
            chain.Loss(full(2, 0.5f)).backward();
            buckets.Launch(1.0, stopVote: false);
            await buckets.ReduceAsync();
            phases.Reduced(buckets.LastReduction);
            phases.Reduced(default);                                   // nothing crossed the network: nothing recorded
        }

        Assert.True(Pretrain.Shared.Telemetry.PretrainMetrics.GradientAllReduceSeconds.WithLabels("hidden").Count > hiddenBefore);   // other tests may observe too
        using var document = JsonDocument.Parse(File.ReadAllBytes(path));
        var events = Events(document);
        var span = Assert.Single(events, e => Name(e) == "gradient_allreduce");
        Assert.Equal(2, span.GetProperty("tid").GetInt32());
        Assert.Equal(7L, Arg(span, "step"));
        Assert.Contains(events, e => Ph(e) == "M" && Name(e) == "thread_name" && e.GetProperty("tid").GetInt32() == 2);
    }

    [Fact]
    public async Task Every_collective_through_the_communicator_is_timed_with_its_kind_and_bytes()
    {
        string path = PathOf("collectives.json");
        using (var trace = Open(path, "worker-0"))
        {
            await using var group = new HostCommunicator(new SingleRank(), trace);
            using var floats = ones(256);
            using var integers = ones(8, dtype: ScalarType.Int64);
            using var gathered = zeros(256);
            using var bytes = zeros(100, dtype: ScalarType.Byte);
            await group.AllReduceSum(floats);
            await group.AllReduceSum(integers);
            await group.AllGather(floats, gathered);
            await group.Broadcast(bytes, root: 0);
        }

        using var document = JsonDocument.Parse(File.ReadAllBytes(path));
        var collectives = Events(document).Where(e => Cat(e) == "collective").ToList();
        Assert.Equal(new[] { ("allreduce", 1024L), ("allreduce", 64L), ("allgather", 1024L), ("broadcast", 100L) },
            collectives.Select(e => (Name(e), Arg(e, "bytes"))));
        Assert.All(collectives, e =>
        {
            Assert.Equal(1, e.GetProperty("tid").GetInt32());
            Assert.Equal(1L, Arg(e, "generation"));
            Assert.Equal(0L, Arg(e, "rank"));
            Assert.False(e.GetProperty("args").TryGetProperty("failed", out _));
        });
    }

    [Theory]
    [InlineData("worker-3", 3)]
    [InlineData("job-worker-12", 12)]
    [InlineData("trainer-a", 4242)]                   // no number: the process id
    [InlineData("node-99999999999", 4242)]            // too large for a track number
    public void A_worker_s_track_is_the_number_its_id_ends_with(string workerId, int track) =>
        Assert.Equal(track, TraceRecorder.TrackOf(workerId, processId: 4242));

    [Fact]
    public void Two_workers_files_merge_into_one_trace_with_both_processes_labelled()
    {
        string[] parts = [PathOf("worker-0.trace.json"), PathOf("worker-1.trace.json")];
        for (int w = 0; w < parts.Length; w++)
            using (var trace = Open(parts[w], $"worker-{w}")) RecordSteps(trace, 2);
        string merged = PathOf("trace.json");

        var result = TraceMerge.Merge([.. parts, PathOf("worker-9.trace.json")], merged);   // a worker that never opened its file is passed over

        Assert.Equal(2, result.Files);
        Assert.Equal(0L, result.Skipped);
        using var document = JsonDocument.Parse(File.ReadAllBytes(merged));
        Assert.Equal("ms", document.RootElement.GetProperty("displayTimeUnit").GetString());
        var events = Events(document);
        Assert.Equal(result.Events, events.Count);
        var names = ProcessNames(events);
        Assert.Equal(2, names.Count);
        Assert.Equal("worker-0", names[0]);
        Assert.Equal("worker-1", names[1]);
        foreach (int pid in names.Keys)
            foreach (string phase in Phases)
                Assert.Equal(2, events.Count(e => Pid(e) == pid && Cat(e) == "step" && Name(e) == phase));
    }

    [Fact]
    public void A_file_cut_short_by_a_kill_merges_without_its_broken_last_line()
    {
        string part = PathOf("killed.trace.json");
        using (var trace = Open(part, "worker-0")) RecordSteps(trace, 1);
        string whole = File.ReadAllText(part);
        int recorded;
        using (var complete = JsonDocument.Parse(whole)) recorded = complete.RootElement.GetArrayLength();
        // SIGKILL in the middle of a write: no closing bracket, and the last event cut off.
        File.WriteAllText(part, whole.TrimEnd()[..^1].TrimEnd() + ",\n{\"name\":\"forward\",\"cat\":\"st");

        var result = TraceMerge.Merge([part], PathOf("trace.json"));

        Assert.Equal(1, result.Files);
        Assert.Equal(recorded, result.Events);
        Assert.Equal(1L, result.Skipped);
        using var document = JsonDocument.Parse(File.ReadAllBytes(PathOf("trace.json")));
        Assert.Equal(recorded, Events(document).Count);
    }

    [Fact]
    public async Task A_local_run_with_trace_writes_one_chrome_trace_of_both_workers_phases_and_collectives()
    {
        string trace = PathOf("run-trace.json"), directory = PathOf("run");

        var run = await LocalRuns.Start(directory, "--recipe", LocalRuns.TinyRecipe, "--workers", "2", "--max-steps", "5", "--trace", trace);

        Assert.True(run.ExitCode == 0, run.Output);
        Assert.Contains("trace: ", run.Output);
        using var document = JsonDocument.Parse(File.ReadAllBytes(trace));
        var events = Events(document);
        var workers = ProcessNames(events);
        Assert.Equal(2, workers.Count);
        Assert.Equal("worker-0", workers[0]);
        Assert.Equal("worker-1", workers[1]);
        var ends = new List<List<double>>();
        foreach (int pid in workers.Keys)
        {
            var spans = events.Where(e => Pid(e) == pid && Ph(e) == "X").ToList();
            foreach (string phase in Phases)
                Assert.Equal(new long[] { 1, 2, 3, 4, 5 }, spans.Where(e => Cat(e) == "step" && Name(e) == phase).Select(e => Arg(e, "step")).Distinct().Order());
            var allreduces = spans.Where(e => Cat(e) == "collective" && Name(e) == "allreduce").ToList();
            Assert.True(allreduces.Count >= 5, $"{workers[pid]}: {allreduces.Count} allreduce collectives for 5 steps");
            Assert.All(allreduces, e => Assert.True(Arg(e, "bytes") > 0, $"{workers[pid]}: an allreduce of {Arg(e, "bytes")} bytes"));
            ends.Add([.. allreduces.Select(e => e.GetProperty("ts").GetDouble() + e.GetProperty("dur").GetDouble())]);
        }
        // One time axis: the ranks of a ring finish each allreduce together (a second's slack for a loaded machine).
        for (int i = 0; i < Math.Min(ends[0].Count, ends[1].Count); i++)
            Assert.True(Math.Abs(ends[0][i] - ends[1][i]) < 1e6, $"allreduce {i} ended at {ends[0][i]} µs on worker-0 and {ends[1][i]} µs on worker-1");
        Assert.Empty(Directory.EnumerateFiles(Path.Combine(directory, "logs"), "*.trace.json"));   // merged, then removed
    }

    [Fact]
    public async Task A_trace_file_in_a_folder_that_does_not_exist_is_refused_naming_the_option()
    {
        var (code, output) = await CliProcess.RunAsync(TimeSpan.FromSeconds(60),
            "worker", "--coordinator", "127.0.0.1:4053", "--trace", PathOf(Path.Combine("missing", "trace.json")));

        Assert.True(code == 2, output);
        Assert.Contains("--trace: the folder", output);
    }

    static TraceRecorder Open(string path, string workerId, int capacity = TraceRecorder.DefaultCapacity) =>
        TraceRecorder.Open(path, workerId, _ => { }, capacity, flushInterval: Timeout.InfiniteTimeSpan);

    /// <summary>What a worker's loop records: a generation, then per step five phases with one allreduce of 4 KiB inside the allreduce phase.</summary>
    static void RecordSteps(TraceRecorder trace, int steps)
    {
        var phases = new StepPhases(trace);
        trace.GenerationStarted(generation: 1, rank: 0, worldSize: 2);
        for (int step = 1; step <= steps; step++)
        {
            phases.Start(step);
            phases.Lap(StepPhase.Data);
            phases.Lap(StepPhase.Forward);
            phases.Lap(StepPhase.Backward);
            long began = Stopwatch.GetTimestamp();
            trace.Collective(TraceKind.AllReduceCall, began, Stopwatch.GetTimestamp(), bytes: 4096, generation: 1, rank: 0, failed: false);
            phases.Lap(StepPhase.AllReduce);
            phases.Lap(StepPhase.Optimizer);
        }
    }

    /// <summary>The events of a worker's file (a JSON array) or of a merged trace (an object with traceEvents).</summary>
    static List<JsonElement> Events(JsonDocument document) => document.RootElement.ValueKind == JsonValueKind.Array
        ? [.. document.RootElement.EnumerateArray()]
        : [.. document.RootElement.GetProperty("traceEvents").EnumerateArray()];

    static Dictionary<int, string> ProcessNames(List<JsonElement> events) => events
        .Where(e => Ph(e) == "M" && Name(e) == "process_name")
        .Select(e => (Pid: Pid(e), Name: e.GetProperty("args").GetProperty("name").GetString() ?? ""))
        .Distinct()
        .ToDictionary(p => p.Pid, p => p.Name);

    static string Name(JsonElement e) => e.GetProperty("name").GetString() ?? "";
    static string Ph(JsonElement e) => e.GetProperty("ph").GetString() ?? "";
    static string Cat(JsonElement e) => e.TryGetProperty("cat", out var cat) ? cat.GetString() ?? "" : "";
    static int Pid(JsonElement e) => e.GetProperty("pid").GetInt32();
    static long Arg(JsonElement e, string name) => e.GetProperty("args").GetProperty(name).GetInt64();

    string PathOf(string name) => Path.Combine(_dir, name);

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }
}
