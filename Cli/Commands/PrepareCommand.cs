using System.CommandLine;
using Pretrain.Cli.Runs;
using Pretrain.Data.Preparation;

namespace Pretrain.Cli.Commands;

/// <summary>
/// The kinds `pretrain prepare` offers and how a spec becomes a plan: <see cref="PreparationPlans"/>
/// in the product. A host embedding the CLI adds kinds of its own (the tests' deterministic plan).
/// </summary>
public sealed record PlanCatalog(IReadOnlyList<string> ExtraKinds, Func<PrepareSpec, IPreparationPlan> Create)
{
    public static readonly PlanCatalog Product = new([], PreparationPlans.Create);
}

/// <summary>`pretrain prepare KIND`: a corpus to verified shards, one subcommand per kind of corpus.</summary>
static class PrepareCommand
{
    public const string FashionMnistDirectory = "/usr/share/datasets/fashion-mnist";   // Debian's dataset-fashion-mnist

    public static Command Create(PlanCatalog catalog)
    {
        var command = new Command("prepare",
            "Turn a corpus into verified shards in an output folder. The coordinator splits the work into tasks, hands them to " +
            "workers (or runs them itself) and journals them: an interrupted run resumes where it stopped.");

        var tokenizer = new Option<string>("--tokenizer") { Description = "Token ids: bytes, or a tiktoken encoding.", DefaultValueFactory = _ => "byte" };
        tokenizer.AcceptOnlyFromAmong("byte", "cl100k_base", "o200k_base");
        var compact = new Option<bool>("--compact-vocabulary") { Description = "Keep only the token ids that occur, renumbered densely (small models need small embeddings)." };
        var jsonField = new Option<string?>("--json-field") { Description = "JSONL inputs: the field that holds each document's text." };
        command.Subcommands.Add(Kind("text", "UTF-8 files, folders and JSONL to packed token shards with document boundaries.",
            Inputs("Text files, folders or JSONL files.", required: true), catalog, [tokenizer, compact, jsonField],
            (spec, parse) => spec with { Tokenizer = parse.GetValue(tokenizer)!, CompactVocabulary = parse.GetValue(compact), JsonField = parse.GetValue(jsonField) }));

        var fashion = Inputs("Folder of the idx files (gzipped or not).", required: false);
        fashion.DefaultValueFactory = _ => [FashionMnistDirectory];
        command.Subcommands.Add(Kind("fashion-mnist", "Fashion-MNIST (idx format) to uint8 image shards, labels kept for evaluation.", fashion, catalog));
        command.Subcommands.Add(Kind("cifar10", "CIFAR-10 binary batches to uint8 image shards.", Inputs("Folder of data_batch_*.bin and test_batch.bin.", required: true), catalog));
        command.Subcommands.Add(Kind("images", "A folder of PNG/JPEG images (sub-folders name labels) to uint8 image shards.", Inputs("Folder of images.", required: true), catalog));
        foreach (var kind in catalog.ExtraKinds)
            command.Subcommands.Add(Kind(kind, $"{kind} (added by this host).", Inputs("Inputs.", required: true), catalog));
        return command;
    }

    static Option<string[]> Inputs(string description, bool required) => new("--input")
    {
        Description = description + " Repeat --input or give several paths.",
        Required = required,
        AllowMultipleArgumentsPerToken = true,
        Arity = ArgumentArity.OneOrMore,
    };

    static Command Kind(string kind, string description, Option<string[]> inputs, PlanCatalog catalog,
        Option[]? kindOptions = null, Func<PrepareSpec, ParseResult, PrepareSpec>? refine = null)
    {
        var output = new Option<DirectoryInfo>("--output") { Description = "Output folder: shards, index.json and (by default) journal.db.", Required = true };
        var validation = new Option<double>("--validation-fraction") { Description = "Share of documents or samples held out for validation.", DefaultValueFactory = _ => 0.01 }
            .Check(v => v < 0 || v >= 1 ? $"--validation-fraction must be in [0, 1), got {v}." : null);
        var shardMb = new Option<int>("--shard-mb") { Description = "Target shard size in MiB.", DefaultValueFactory = _ => 64 }.Positive();
        var seed = new Option<long>("--seed") { Description = "Seed of the train/validation split." };
        var workers = new Option<int>("--workers") { Description = "Local worker processes that take tasks; 0 = the coordinator runs them itself.", DefaultValueFactory = _ => 0 }
            .Check(v => v < 0 ? $"--workers must be 0 or more, got {v}." : null);
        var runDir = new Option<DirectoryInfo?>("--run-dir") { Description = "Where journal.db and logs/ go. Default: the output folder." };
        var journal = new Option<string?>("--journal") { Description = "PostgreSQL connection string for the journal instead of SQLite journal.db in the run directory." };
        var port = new Option<int>("--port") { Description = "Akka port that workers started elsewhere join with `pretrain worker --prepare` (0 = any free port).", DefaultValueFactory = _ => 0 };
        var timeout = CommonOptions.Timeout();
        var verbose = CommonOptions.Verbose();
        var secretFile = CommonOptions.SecretFile("prepare");

        var command = new Command(kind, description) { inputs, output, validation, shardMb, seed, workers, runDir, journal, port, timeout, verbose, secretFile };
        foreach (var option in kindOptions ?? []) command.Options.Add(option);
        command.SetAction((parse, ct) => CommandRunner.RunAsync(() =>
        {
            var outputDirectory = parse.GetRequiredValue(output).FullName;
            var spec = new PrepareSpec(kind, [.. parse.GetValue(inputs)!.Select(Path.GetFullPath)], outputDirectory,
                ValidationFraction: parse.GetValue(validation), ShardBytes: (long)parse.GetValue(shardMb) << 20, Seed: parse.GetValue(seed));
            if (refine != null) spec = refine(spec, parse);
            return PrepareRun.RunAsync(new PrepareOptions
            {
                Spec = spec,
                Plans = catalog.Create,
                Workers = parse.GetValue(workers),
                RunDirectory = parse.GetValue(runDir)?.FullName ?? outputDirectory,
                PostgresJournal = parse.GetValue(journal),
                Port = parse.GetValue(port),
                Timeout = TimeSpan.FromSeconds(parse.GetValue(timeout)),
                Verbose = parse.GetValue(verbose),
                SecretFile = parse.GetValue(secretFile)?.FullName,
            }, ct);
        }));
        return command;
    }
}
