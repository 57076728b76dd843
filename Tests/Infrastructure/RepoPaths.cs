namespace Pretrain.Tests.Infrastructure;

/// <summary>Where the repository and the built CLI are, found from the test assembly's location.</summary>
public static class RepoPaths
{
    public static string Root { get; } = FindRoot();

    /// <summary>The pretrain executable built next to the tests (the test project references the CLI).</summary>
    public static string Cli { get; } = Path.Combine(AppContext.BaseDirectory, "pretrain");

    public static string Recipe(string name) => Path.Combine(Root, "recipes", name);

    public static string KjvText => Path.Combine(Root, "data", "kjv.txt");

    /// <summary>recipes/gpt-kjv-tiny.yaml with its text path made absolute and <paramref name="edit"/> applied, written as <paramref name="directory"/>/<paramref name="name"/>.</summary>
    public static string EditedTinyRecipe(string directory, string name, Func<string, string> edit)
    {
        string path = Path.Combine(directory, name);
        string text = File.ReadAllText(Recipe("gpt-kjv-tiny.yaml")).Replace("../data/kjv.txt", KjvText);
        File.WriteAllText(path, edit(text));
        return path;
    }

    static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Cluster.sln"))) return dir.FullName;
        throw new InvalidOperationException("Cluster.sln not found above " + AppContext.BaseDirectory);
    }
}
