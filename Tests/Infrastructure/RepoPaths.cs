namespace Pretrain.Tests.Infrastructure;

/// <summary>Where the repository and the built CLI are, found from the test assembly's location.</summary>
public static class RepoPaths
{
    public static string Root { get; } = FindRoot();

    /// <summary>The pretrain executable built next to the tests (the test project references the CLI).</summary>
    public static string Cli { get; } = Path.Combine(AppContext.BaseDirectory, "pretrain");

    public static string Recipe(string name) => Path.Combine(Root, "recipes", name);

    public static string KjvText => Path.Combine(Root, "data", "kjv.txt");

    static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Cluster.sln"))) return dir.FullName;
        throw new InvalidOperationException("Cluster.sln not found above " + AppContext.BaseDirectory);
    }
}
