using Pretrain.Shared.IO;
using System.Globalization;
using System.IO.Hashing;
using System.Text.Json;
using Pretrain.Shared.Recipes;
using Pretrain.Shared.Telemetry;
using static TorchSharp.torch;

namespace Pretrain.Worker.Training.Checkpoints;

/// <summary>A checkpoint write failed on the file system (full, read-only): the message names the file and what errno said.</summary>
public sealed class CheckpointWriteException(string message, Exception inner) : IOException(message, inner);

/// <summary>What a checkpoint holds besides its manifest.</summary>
public sealed record CheckpointContent(
    TrainingState State,
    IReadOnlyList<(string Name, Tensor Tensor)> Model,     // parameters, by name
    IReadOnlyList<(string Name, Tensor Tensor)> Optimizer, // AdamW's m.NAME and v.NAME
    Recipe Recipe,
    int WorldSize);

/// <summary>A checkpoint whose manifest and checksums verified.</summary>
public sealed record VerifiedCheckpoint(string Directory, CheckpointManifest Manifest, TrainingState State)
{
    public void LoadModel(IReadOnlyDictionary<string, Tensor> parameters) =>
        TensorFile.Read(Path.Combine(Directory, CheckpointStore.ModelFile), parameters);

    public void LoadOptimizer(IReadOnlyDictionary<string, Tensor> state) =>
        TensorFile.Read(Path.Combine(Directory, CheckpointStore.OptimizerFile), state);
}

/// <summary>
/// <c>RUN/checkpoints/step-NNNNNNNN/</c>, written atomically: every file goes into
/// <c>.tmp-step-NNNNNNNN-RANDOM/</c> and is fsynced, the manifest last; the directory is renamed to its
/// final name and the parent fsynced. A kill at any moment leaves either the old set of checkpoints or
/// the new one, plus at worst a <c>.tmp-*</c> directory that loading ignores and the next published
/// checkpoint removes (those of its step or earlier: a writer of an older step is a dead one).
/// </summary>
public sealed class CheckpointStore(string runDirectory, Action<string> log)
{
    public const string ModelFile = "model.tensors";
    public const string OptimizerFile = "optimizer.tensors";
    public const string StateFile = "training_state.json";
    public const string RecipeFile = "recipe.yaml";
    private const string Prefix = "step-";

    public string Directory { get; } = Path.Combine(runDirectory, "checkpoints");

    public static string NameOf(long step) => $"{Prefix}{step:D8}";

    /// <summary>Writes the checkpoint of <c>content.State.Step</c>, keeps the newest <paramref name="keep"/>, returns its directory.</summary>
    public string Write(CheckpointContent content, int keep)
    {
        var step = content.State.Step;
        var temporary = Path.Combine(Directory, $".tmp-{NameOf(step)}-{Guid.NewGuid():N}");
        string writing = temporary;
        try
        {
            System.IO.Directory.CreateDirectory(Directory);
            System.IO.Directory.CreateDirectory(temporary);
            TensorFile.Write(writing = Path.Combine(temporary, ModelFile), content.Model);
            TensorFile.Write(writing = Path.Combine(temporary, OptimizerFile), content.Optimizer);
            WriteDurably(writing = Path.Combine(temporary, StateFile), JsonSerializer.SerializeToUtf8Bytes(content.State, CheckpointManifest.Json));
            WriteDurably(writing = Path.Combine(temporary, RecipeFile), System.Text.Encoding.UTF8.GetBytes(content.Recipe.Source.Text));
            var files = new[] { ModelFile, OptimizerFile, StateFile, RecipeFile }
                .Select(name => Describe(Path.Combine(temporary, name))).ToList();
            var manifest = new CheckpointManifest(CheckpointManifest.CurrentFormat, step, content.Recipe.Source.Hash, content.WorldSize, files);
            WriteDurably(writing = Path.Combine(temporary, CheckpointManifest.FileName), JsonSerializer.SerializeToUtf8Bytes(manifest, CheckpointManifest.Json));
            DirectorySync.Flush(writing = temporary);
        }
        catch (Exception e) when (IoErrors.IsFileSystem(e))
        {
            // A full or read-only disk: give the space back and leave the published checkpoints as they are.
            try { if (System.IO.Directory.Exists(temporary)) System.IO.Directory.Delete(temporary, recursive: true); }
            catch (Exception cleanup) when (IoErrors.IsFileSystem(cleanup)) { log($"warning: could not remove {temporary}: {cleanup.Message}"); }
            var previous = Published().Select(p => p.Directory).FirstOrDefault();
            throw new CheckpointWriteException(
                $"the checkpoint of step {step} could not be written: {writing}: {IoErrors.Describe(e)} " +
                (previous != null ? $"(the previous checkpoint, {previous}, is untouched)" : "(no earlier checkpoint exists)"), e);
        }

        var final = Path.Combine(Directory, NameOf(step));
        if (System.IO.Directory.Exists(final)) // re-running a step (e.g. a fresh run in an old run directory)
            System.IO.Directory.Delete(final, recursive: true);
        System.IO.Directory.Move(temporary, final);
        DirectorySync.Flush(Directory);
        PretrainMetrics.CheckpointPublished();

        foreach (var (_, old) in Published().Skip(keep))
            System.IO.Directory.Delete(old, recursive: true);
        RemoveAbandoned(step);
        return final;
    }

    /// <summary>Deletes every <c>.tmp-step-*</c> directory: call only when no writer is left (the launcher, after its workers exited).</summary>
    public void RemoveTemporaries()
    {
        if (System.IO.Directory.Exists(Directory)) RemoveAbandoned(long.MaxValue);
    }

    /// <summary>The newest published checkpoint's step and directory, unverified (publishing is atomic), or null.</summary>
    public (long Step, string Directory)? NewestQuietly() => Published().Select(p => ((long, string)?)p).FirstOrDefault();

    /// <summary>Deletes <c>.tmp-step-N-*</c> directories with N ≤ <paramref name="published"/>, left by writes that were killed.</summary>
    private void RemoveAbandoned(long published)
    {
        foreach (var directory in System.IO.Directory.EnumerateDirectories(Directory, ".tmp-" + Prefix + "*"))
        {
            var name = Path.GetFileName(directory).AsSpan(".tmp-".Length + Prefix.Length);
            var dash = name.IndexOf('-');
            if (dash <= 0 || !long.TryParse(name[..dash], NumberStyles.None, CultureInfo.InvariantCulture, out var step) || step > published)
                continue;
            try
            {
                System.IO.Directory.Delete(directory, recursive: true);
                log($"removed {directory}, left by a checkpoint write that did not finish");
            }
            catch (IOException e)
            {
                log($"warning: could not remove {directory}: {e.Message}");
            }
        }
    }

    /// <summary>
    /// The newest checkpoint whose manifest parses and whose files match their sizes and checksums; broken
    /// ones are skipped with a warning naming the file. Throws when that checkpoint belongs to another
    /// recipe; a null <paramref name="recipeHash"/> accepts any (evaluation reads the recipe from it).
    /// </summary>
    public VerifiedCheckpoint? FindNewest(string? recipeHash)
    {
        foreach (var (step, directory) in Published())
        {
            VerifiedCheckpoint checkpoint;
            try
            {
                checkpoint = Verify(directory, step);
            }
            catch (InvalidDataException e)
            {
                log($"warning: {e.Message}; skipping {directory}");
                continue;
            }
            if (recipeHash is not null && checkpoint.Manifest.RecipeHash != recipeHash)
                throw new InvalidOperationException(
                    $"{directory} was written by recipe {checkpoint.Manifest.RecipeHash} but this job's recipe is {recipeHash}; " +
                    "refusing to resume (use a new run directory, or the original recipe)");
            return checkpoint;
        }
        return null;
    }

    /// <summary>The checkpoint in <paramref name="directory"/>, verified; throws <see cref="InvalidDataException"/> naming what is wrong with it.</summary>
    public static VerifiedCheckpoint Open(string directory)
    {
        var name = Path.GetFileName(Path.GetFullPath(directory));
        if (!name.StartsWith(Prefix, StringComparison.Ordinal) || !long.TryParse(name.AsSpan(Prefix.Length), NumberStyles.None, CultureInfo.InvariantCulture, out var step))
            throw new InvalidDataException($"{directory}: not a checkpoint directory (expected checkpoints/{Prefix}NNNNNNNN)");
        return Verify(directory, step);
    }

    /// <summary>Published checkpoint directories, newest first; <c>.tmp-*</c> and other names are ignored.</summary>
    public IEnumerable<(long Step, string Directory)> Published() =>
        !System.IO.Directory.Exists(Directory) ? [] :
        System.IO.Directory.EnumerateDirectories(Directory, Prefix + "*")
            .Select(d => (Ok: long.TryParse(Path.GetFileName(d).AsSpan(Prefix.Length), NumberStyles.None, CultureInfo.InvariantCulture, out var s), Step: s, Dir: d))
            .Where(x => x.Ok)
            .OrderByDescending(x => x.Step)
            .Select(x => (x.Step, x.Dir))
            .ToList();

    /// <summary>
    /// The checkpoint of <paramref name="step"/> in <paramref name="directory"/>: its manifest parses and lists every file
    /// the loaders read, by plain names in this directory; those files match their sizes and checksums; the training state
    /// parses and is at the same step. Otherwise throws <see cref="InvalidDataException"/> naming the file that is wrong.
    /// </summary>
    private static VerifiedCheckpoint Verify(string directory, long step)
    {
        var manifestPath = Path.Combine(directory, CheckpointManifest.FileName);
        var manifest = ReadJson<CheckpointManifest>(manifestPath);
        if (manifest.FormatVersion != CheckpointManifest.CurrentFormat || manifest.Files is null || manifest.RecipeHash is null)
            throw new InvalidDataException($"{manifestPath}: not a format {CheckpointManifest.CurrentFormat} manifest");
        if (ListingProblem(manifest.Files) is { } problem)
            throw new InvalidDataException($"{manifestPath}: {problem}");
        foreach (var expected in manifest.Files)
        {
            var path = Path.Combine(directory, expected.Name);
            var actual = File.Exists(path) ? Describe(path) : null;
            if (actual is null || actual.Size != expected.Size || actual.Xxhash64 != expected.Xxhash64)
                throw new InvalidDataException(
                    $"{path}: checksum mismatch (expected {expected.Size} bytes xxhash64 {expected.Xxhash64}, " +
                    $"found {(actual is null ? "no file" : $"{actual.Size} bytes xxhash64 {actual.Xxhash64}")})");
        }
        if (manifest.Step != step)
            throw new InvalidDataException($"{directory}: manifest says step {manifest.Step}");

        // Verified above, so a state that does not parse was written so, not damaged on disk.
        var statePath = Path.Combine(directory, StateFile);
        var state = ReadJson<TrainingState>(statePath);
        if (state.Step != manifest.Step)
            throw new InvalidDataException($"{statePath}: step {state.Step}, but the manifest says step {manifest.Step}");
        if (state.SampleDigest is null)
            throw new InvalidDataException($"{statePath}: sample_digest is null");
        return new VerifiedCheckpoint(directory, manifest, state);
    }

    // The files the loaders read: each must be listed, so that it is verified before it is read.
    private static readonly string[] Listed = [ModelFile, OptimizerFile, StateFile, RecipeFile];

    /// <summary>What is wrong with a manifest's list of files, or null.</summary>
    private static string? ListingProblem(IReadOnlyList<CheckpointFile?> files)
    {
        foreach (var file in files)
        {
            if (file is null || file.Name is null || file.Xxhash64 is null)
                return "a file without a name or a checksum";
            // A plain name of a file in this directory: "../../x", "/etc/passwd" or "sub/../../x" would have the reader
            // open (and verify, and a loader then trust) a file outside the checkpoint; a device there could hang it.
            if (file.Name is "" or "." or ".." || file.Name.IndexOfAny(['/', '\\', '\0']) >= 0)
                return $"file name '{file.Name}' is not a file of the checkpoint directory";
            if (file.Size < 0)
                return $"{file.Name} has a negative size ({file.Size})";
        }
        return Listed.FirstOrDefault(name => !files.Any(f => f?.Name == name)) is { } missing ? $"{missing} is not listed" : null;
    }

    /// <summary>The JSON file at <paramref name="path"/>; throws <see cref="InvalidDataException"/> naming it when it cannot be read or parsed.</summary>
    private static T ReadJson<T>(string path) where T : class
    {
        T? value;
        try
        {
            value = JsonSerializer.Deserialize<T>(File.ReadAllBytes(path), CheckpointManifest.Json);
        }
        catch (Exception e) when (e is IOException or JsonException)
        {
            throw new InvalidDataException($"{path}: unreadable ({e.Message})", e);
        }
        return value ?? throw new InvalidDataException($"{path}: null");
    }

    private static CheckpointFile Describe(string path)
    {
        using var stream = File.OpenRead(path);
        var hash = new XxHash64();
        hash.Append(stream);
        return new CheckpointFile(Path.GetFileName(path), stream.Length, hash.GetCurrentHashAsUInt64().ToString("x16", CultureInfo.InvariantCulture));
    }

    private static void WriteDurably(string path, ReadOnlySpan<byte> bytes)
    {
        using var stream = new FileStream(path, FileMode.CreateNew, FileAccess.Write);
        stream.Write(bytes);
        stream.Flush(flushToDisk: true);
    }
}
