using System.Text.RegularExpressions;
using Pretrain.Tests.Infrastructure;

namespace Pretrain.Tests.Cluster;

/// <summary>The tiny recipe with far more steps, for tests that act on a job while it trains.</summary>
public static class LongRecipe
{
    public static string Write(string directory)
    {
        Directory.CreateDirectory(directory);
        string text = File.ReadAllText(RepoPaths.Recipe("gpt-kjv-tiny.yaml"));
        text = Regex.Replace(text, @"(?m)^steps: \d+", "steps: 100000");
        text = Regex.Replace(text, @"(?m)^(\s+text: )\S+", "${1}" + RepoPaths.KjvText);
        text = Regex.Replace(text, @"(?m)^(\s+every: )\d+", "${1}100000");
        string path = Path.Combine(directory, "long.yaml");
        File.WriteAllText(path, text);
        return path;
    }

    /// <summary>The pid `pretrain local` printed for a worker ("worker-1 started (pid 1234, …").</summary>
    public static int WorkerPid(string output, string workerId) =>
        int.Parse(Regex.Match(output, Regex.Escape(workerId) + @" started \(pid (\d+)").Groups[1].Value);

    /// <summary>The highest step the progress output has shown so far.</summary>
    public static long LastStep(string output) =>
        Regex.Matches(output, @"step (\d+)/").Select(m => long.Parse(m.Groups[1].Value)).DefaultIfEmpty(0).Max();
}
