namespace Pretrain.Data.Preparation;

/// <summary>
/// One unit of corpus preparation: usually "write shard k". Tasks are independent and deterministic:
/// running one twice writes byte-identical output, and a finished task's output is complete (written
/// atomically), so an interrupted preparation resumes by running only the tasks not yet finished.
/// </summary>
public sealed record PreparationTask(
    string Id,          // stable, unique within the plan, e.g. "train-00003"
    string Description, // for progress and logs, e.g. "train shard 3 (docs 1200-1599)"
    long Bytes);        // input bytes the task reads: progress and throughput

/// <summary>
/// How a corpus becomes shards, split into tasks that the coordinator hands to connected workers (or
/// runs itself when none are connected) and records in its journal.
/// </summary>
public interface IPreparationPlan
{
    /// <summary>The output folder (holds the shards and, once finished, index.json).</summary>
    string OutputDirectory { get; }

    /// <summary>Every task, in a fixed order.</summary>
    IReadOnlyList<PreparationTask> Tasks { get; }

    /// <summary>True when the task's output already exists and verifies (so it is not run again).</summary>
    bool IsDone(PreparationTask task);

    /// <summary>Runs one task; writes its output atomically.</summary>
    void Run(PreparationTask task, IProgress<long>? bytesDone, CancellationToken ct);

    /// <summary>After every task: writes index.json (shards, sample counts, tokenizer, vocabulary, checksums).</summary>
    void Finish();
}
