using System.Diagnostics;
using Pretrain.Data.Preparation;
using Pretrain.Data.Shards;
using Pretrain.Tests.Training;

namespace Pretrain.Tests.Text;

/// <summary>Small corpora and a whole preparation run in process, for the text tests.</summary>
public static class TextPreparations
{
    private static readonly Lazy<string> GenesisText = new(() => Bible("Gen1:1-Gen50:26"));

    /// <summary>Genesis from the bible-kjv package: ~210 KB, so ~4 passages of 64 KiB (a slice of the KJV keeps the tests quick).</summary>
    public static string Genesis => GenesisText.Value;

    public static string Bible(string range)
    {
        var start = new ProcessStartInfo("bible", range) { RedirectStandardOutput = true };
        using var process = Process.Start(start) ?? throw new InvalidOperationException("cannot start `bible` (apt-get install bible-kjv)");
        var text = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        return text;
    }

    /// <summary>Writes <paramref name="files"/> (relative name → content) under a new folder and returns it.</summary>
    public static string Folder(params (string Name, string Text)[] files)
    {
        var folder = TestRecipes.TemporaryDirectory();
        foreach (var (name, text) in files)
        {
            var path = Path.Combine(folder, name);
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            File.WriteAllText(path, text);
        }
        return folder;
    }

    public static PrepareSpec Spec(string input, string tokenizer = "byte", double validation = 0, long shardBytes = 64L << 20,
        string? jsonField = null, bool compact = false, long seed = 0) =>
        new("text", [input], Path.Combine(TestRecipes.TemporaryDirectory(), "out"), tokenizer, compact, jsonField, validation, shardBytes, seed);

    /// <summary>Every task, then Finish, as the coordinator would run them.</summary>
    public static IPreparationPlan Prepare(PrepareSpec spec)
    {
        var plan = PreparationPlans.Create(spec);
        foreach (var task in plan.Tasks)
            plan.Run(task, null, CancellationToken.None);
        plan.Finish();
        return plan;
    }

    /// <summary>The records of <paramref name="split"/> as int ids, in sample order.</summary>
    public static List<int[]> Documents(string output, string split)
    {
        using var set = ShardSet.Open(output, split);
        var documents = new List<int[]>();
        for (long id = 0; id < set.Count; id++)
        {
            var reader = set.Locate(id, out var local);
            documents.Add(reader.Layout.DType == ShardDType.UInt16
                ? [.. reader.Record<ushort>(local).ToArray().Select(t => (int)t)]
                : reader.Record<int>(local).ToArray());
        }
        return documents;
    }
}
