using Pretrain.Cli.Commands;
using Pretrain.Coordinator;
using Pretrain.Shared.IO;
using Pretrain.Worker.Training.Checkpoints;

namespace Pretrain.Cli.Runs;

/// <summary>
/// What a run directory already holds, checked before a new job starts in it: an earlier run is never
/// trained over without --overwrite, --resume never silently starts from step 0, and a directory that
/// cannot be written is refused before anything is started.
/// </summary>
static class RunDirectoryState
{
    /// <summary>The run directory (and its logs/) exist and take a file; otherwise bad input naming the errno's meaning.</summary>
    public static void EnsureWritable(string runDirectory)
    {
        string probe = Path.Combine(runDirectory, "logs", $".probe-{Environment.ProcessId}");
        try
        {
            Directory.CreateDirectory(Path.Combine(runDirectory, "logs"));
            File.WriteAllBytes(probe, [1]);
            File.Delete(probe);
        }
        catch (Exception e) when (IoErrors.IsFileSystem(e))
        {
            throw new UserError($"--run-dir: {runDirectory} cannot be written ({IoErrors.Describe(e)}); choose a writable directory.");
        }
    }

    /// <summary>--overwrite: removes what an earlier run left (checkpoints, journal, summary, coordinator file, logs).</summary>
    public static void Clear(string runDirectory, RunConsole console)
    {
        var removed = new List<string>();
        foreach (var directory in new[] { "checkpoints", "logs" }.Select(d => Path.Combine(runDirectory, d)).Where(Directory.Exists))
        {
            Directory.Delete(directory, recursive: true);
            removed.Add(Path.GetFileName(directory) + "/");
        }
        string[] files = [JournalOptions.JournalFileName, JournalOptions.JournalFileName + "-wal", JournalOptions.JournalFileName + "-shm",
            "summary.json", CoordinatorFile.FileName];
        foreach (var file in files.Select(f => Path.Combine(runDirectory, f)).Where(File.Exists))
        {
            File.Delete(file);
            removed.Add(Path.GetFileName(file));
        }
        if (removed.Count > 0) console.Info($"--overwrite: removed {string.Join(", ", removed)} from {runDirectory}");
    }

    /// <summary>
    /// Before a job that is new to the journal is defined: with --resume a checkpoint of this recipe must
    /// verify (--resume-or-start may start from step 0); without it the directory must hold no earlier run.
    /// </summary>
    public static void CheckNewJob(string runDirectory, CheckpointStore checkpoints, string recipeHash, RunOptions options, bool journalExisted)
    {
        if (options.Resume || options.ResumeOrStart)
        {
            VerifiedCheckpoint? newest;
            try { newest = checkpoints.FindNewest(recipeHash); }
            catch (InvalidOperationException e) { throw new UserError("--resume: " + e.Message); }   // another recipe's checkpoint
            if (newest is null && !options.ResumeOrStart)
                throw new UserError(checkpoints.Published().Any()
                    ? $"--resume: no checkpoint in {checkpoints.Directory} verifies (see the warnings above); start from step 0 with --resume-or-start, or use another --run-dir."
                    : $"--resume: {checkpoints.Directory} holds no checkpoint to resume from; start from step 0 with --resume-or-start, or use another --run-dir.");
            return;
        }
        var held = new List<string>();
        if (checkpoints.Published().Any()) held.Add("checkpoints/");
        if (journalExisted) held.Add(JournalOptions.JournalFileName);
        if (held.Count > 0)
            throw new UserError($"{runDirectory} already holds a run ({string.Join(" and ", held)}): continue it with --resume, " +
                                "or start afresh with --overwrite (which deletes them), or use another --run-dir.");
    }
}
