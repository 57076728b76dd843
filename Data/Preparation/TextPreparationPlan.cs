using System.Runtime.InteropServices;
using Pretrain.Data.Shards;
using Pretrain.Data.Text;
using Pretrain.Data.Tokenizers;

namespace Pretrain.Data.Preparation;

/// <summary>
/// Text corpora to token shards (layout in docs/FORMATS.md, "Text shards"). One record per document,
/// without separators: the shard's record index is the document-start index, and a causal-LM reader
/// packs fixed contexts across documents by concatenating records with [SEP] after each
/// (CausalLmCollator.Concatenate). Tasks are shards: each split's documents in corpus order, cut into
/// runs whose estimated output stays under <see cref="PrepareSpec.ShardBytes"/>; the split and the runs
/// are fixed when the plan is built, so a task writes the same bytes wherever and whenever it runs.
/// </summary>
public static class TextPreparationPlan
{
    // Estimated shard bytes per input byte, to size shards before tokenizing: bytes become uint16 ids
    // (2 bytes each); tiktoken averages ~4 bytes of English a token, stored as int32, so ~1.
    private const double ByteTokenizerOutputPerInputByte = 2.0;
    private const double TiktokenOutputPerInputByte = 1.0;

    public static IPreparationPlan Create(PrepareSpec spec)
    {
        TokenizerFactory.CheckName(spec.Tokenizer);
        if (spec.ShardBytes <= 0)
            throw new InvalidDataException($"shard bytes {spec.ShardBytes}: expected a positive size");
        var corpus = TextCorpus.Scan(spec.Inputs, spec.JsonField);
        var (train, validation) = TextSplit.Assign(corpus, spec.ValidationFraction, spec.Seed);
        var outputPerByte = spec.Tokenizer == ByteTokenizer.TokenizerName ? ByteTokenizerOutputPerInputByte : TiktokenOutputPerInputByte;
        var shards = Group("train", train, corpus, spec.ShardBytes, outputPerByte)
            .Concat(Group("validation", validation, corpus, spec.ShardBytes, outputPerByte))
            .ToList();
        return new TextPlan(spec, corpus, shards);
    }

    // Consecutive documents until the next would push the estimate over the target; a longer document
    // gets a shard to itself (documents are never split across shards).
    private static IEnumerable<TextShard> Group(string split, int[] documents, TextCorpus corpus, long shardBytes, double outputPerByte)
    {
        var current = new List<int>();
        double estimate = 0;
        var number = 0;
        foreach (var d in documents)
        {
            var bytes = corpus.Documents[d].Length * outputPerByte;
            if (current.Count > 0 && estimate + bytes > shardBytes)
            {
                yield return new TextShard(split, number++, [.. current]);
                (current, estimate) = ([], 0);
            }
            current.Add(d);
            estimate += bytes;
        }
        if (current.Count > 0)
            yield return new TextShard(split, number, [.. current]);
    }
}

/// <summary>One task's output: shard <see cref="Number"/> of <see cref="Split"/>, holding these documents in order.</summary>
public sealed record TextShard(string Split, int Number, int[] Documents)
{
    public string Id => $"{Split}-{Number:D5}";
    public string File => $"{Id}.shard";
}

internal sealed class TextPlan : IPreparationPlan
{
    private readonly PrepareSpec spec;
    private readonly TextCorpus corpus;
    private readonly IReadOnlyList<TextShard> shards;
    private readonly Dictionary<string, TextShard> byId;
    private readonly Lazy<ITokenizer> tokenizer; // tiktoken takes ~0.5 s to load: only processes that run tasks pay

    public TextPlan(PrepareSpec spec, TextCorpus corpus, IReadOnlyList<TextShard> shards)
    {
        this.spec = spec;
        this.corpus = corpus;
        this.shards = shards;
        byId = shards.ToDictionary(s => s.Id);
        tokenizer = new Lazy<ITokenizer>(() => TokenizerFactory.Create(spec.Tokenizer));
        Tasks = [.. shards.Select(s => new PreparationTask(s.Id, Describe(s), s.Documents.Sum(d => (long)corpus.Documents[d].Length)))];
    }

    public string OutputDirectory => spec.Output;
    public IReadOnlyList<PreparationTask> Tasks { get; }

    // 260 byte-level ids fit uint16; tiktoken's 100k-200k do not. Shards keep original ids (see CompactVocabulary).
    private ShardDType DType => spec.Tokenizer == ByteTokenizer.TokenizerName ? ShardDType.UInt16 : ShardDType.Int32;

    public bool IsDone(PreparationTask task)
    {
        var shard = byId[task.Id];
        var path = Path.Combine(spec.Output, shard.File);
        if (!File.Exists(path))
            return false;
        try
        {
            using var reader = ShardReader.Open(path);
            return reader.Count == shard.Documents.Length && reader.Layout.Kind == ShardKind.Tokens && reader.Layout.DType == DType;
        }
        catch (InvalidDataException)
        {
            return false; // a damaged shard is written again, atomically replacing it
        }
    }

    /// <summary>Tokenizes the task's documents into its shard; reports input bytes as each document is done (increments).</summary>
    public void Run(PreparationTask task, IProgress<long>? bytesDone, CancellationToken ct)
    {
        var shard = byId[task.Id];
        var encoder = tokenizer.Value;
        Directory.CreateDirectory(spec.Output);
        using var reader = new DocumentReader(corpus);
        using var writer = new ShardWriter(Path.Combine(spec.Output, shard.File), ShardLayout.Tokens(DType));
        var ids = new List<int>();
        var narrow = Array.Empty<ushort>();
        foreach (var d in shard.Documents)
        {
            ct.ThrowIfCancellationRequested();
            var document = corpus.Documents[d];
            ids.Clear();
            encoder.Encode(reader.Read(document), ids);
            var span = CollectionsMarshal.AsSpan(ids);
            if (DType == ShardDType.Int32)
            {
                writer.Append<int>(span);
            }
            else
            {
                if (narrow.Length < span.Length)
                    narrow = new ushort[Math.Max(span.Length, 2 * narrow.Length)];
                for (var i = 0; i < span.Length; i++)
                    narrow[i] = (ushort)span[i];
                writer.Append<ushort>(narrow.AsSpan(0, span.Length));
            }
            bytesDone?.Report(document.Length);
        }
        writer.Complete();
    }

    public void Finish() => TextIndex.Write(spec, tokenizer.Value, DType, shards);

    private string Describe(TextShard s) =>
        $"{s.Split} shard {s.Number} (documents {s.Documents[0]}-{s.Documents[^1]} of {corpus.Documents.Count})";
}
