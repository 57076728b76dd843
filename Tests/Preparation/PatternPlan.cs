using System.Collections.Concurrent;
using System.Buffers.Binary;
using System.IO.Hashing;
using System.Text;
using Pretrain.Data.Preparation;

namespace Pretrain.Tests.Preparation;

/// <summary>
/// A deterministic preparation plan for tests (kind <see cref="Kind"/>): one task per input file, in
/// name order; a task writes <c>NAME.shard</c> atomically — the input's bytes mixed with a key that
/// depends only on the task id, then an xxHash64 trailer that <see cref="IsDone"/> verifies. A delay
/// per task makes a run slow enough to kill half way. Counts every run, so tests see work done twice.
/// </summary>
public sealed class PatternPlan : IPreparationPlan
{
    public const string Kind = "test-pattern";
    public const string DelayVariable = "PRETRAIN_TEST_TASK_DELAY_MS";

    private readonly TimeSpan _delay;

    public PatternPlan(PrepareSpec spec, TimeSpan delay)
    {
        OutputDirectory = spec.Output;
        _delay = delay;
        Tasks = [.. spec.Inputs.SelectMany(i => Directory.Exists(i) ? Directory.GetFiles(i) : [i])
            .Order(StringComparer.Ordinal)
            .Select(f => new PreparationTask(Path.GetFileNameWithoutExtension(f), f, new FileInfo(f).Length))];
    }

    /// <summary>The plan as the test host builds it: the delay comes from <see cref="DelayVariable"/>.</summary>
    public static PatternPlan FromEnvironment(PrepareSpec spec) =>
        new(spec, TimeSpan.FromMilliseconds(int.TryParse(Environment.GetEnvironmentVariable(DelayVariable), out int ms) ? ms : 0));

    public string OutputDirectory { get; }
    public IReadOnlyList<PreparationTask> Tasks { get; }
    public ConcurrentDictionary<string, int> Runs { get; } = new();
    public int Finishes;

    public static string ShardPath(string output, string taskId) => Path.Combine(output, taskId + ".shard");

    public bool IsDone(PreparationTask task)
    {
        var path = ShardPath(OutputDirectory, task.Id);
        if (!File.Exists(path)) return false;
        var bytes = File.ReadAllBytes(path);
        return bytes.Length >= 8 && XxHash64.HashToUInt64(bytes.AsSpan(0, bytes.Length - 8)) == BinaryPrimitives.ReadUInt64LittleEndian(bytes.AsSpan(bytes.Length - 8));
    }

    public void Run(PreparationTask task, IProgress<long>? bytesDone, CancellationToken ct)
    {
        Runs.AddOrUpdate(task.Id, 1, (_, n) => n + 1);
        Task.Delay(_delay, ct).GetAwaiter().GetResult();
        var input = File.ReadAllBytes(task.Description);
        var key = XxHash64.Hash(Encoding.UTF8.GetBytes(task.Id));
        var output = new byte[input.Length + 8];
        for (int i = 0; i < input.Length; i++) output[i] = (byte)(input[i] ^ key[i % key.Length]);
        BinaryPrimitives.WriteUInt64LittleEndian(output.AsSpan(input.Length), XxHash64.HashToUInt64(output.AsSpan(0, input.Length)));
        WriteAtomically(ShardPath(OutputDirectory, task.Id), output);
        bytesDone?.Report(input.Length);
    }

    public void Finish()
    {
        Interlocked.Increment(ref Finishes);
        var index = string.Join('\n', Tasks.Select(t => $"{t.Id}.shard {Convert.ToHexStringLower(File.ReadAllBytes(ShardPath(OutputDirectory, t.Id))[^8..])}"));
        WriteAtomically(Path.Combine(OutputDirectory, "index.txt"), Encoding.UTF8.GetBytes(index + "\n"));
    }

    private static void WriteAtomically(string path, byte[] bytes)
    {
        var temporary = path + ".tmp";
        File.WriteAllBytes(temporary, bytes);
        File.Move(temporary, path, overwrite: true);
    }

    /// <summary>Writes <paramref name="count"/> input files of a few KiB each, contents fixed by their index.</summary>
    public static string WriteInputs(string folder, int count)
    {
        Directory.CreateDirectory(folder);
        for (int i = 0; i < count; i++)
            File.WriteAllBytes(Path.Combine(folder, $"part-{i:D3}.txt"), [.. Enumerable.Range(0, 4096 + 97 * i).Select(b => (byte)(b * 31 + i))]);
        return folder;
    }
}
