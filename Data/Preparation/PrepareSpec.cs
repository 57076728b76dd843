namespace Pretrain.Data.Preparation;

/// <summary>
/// What `pretrain prepare` was asked to do. The coordinator journals it and sends it to workers, and
/// every process builds the same <see cref="IPreparationPlan"/> from it (<see cref="PreparationPlans"/>),
/// so a task id means the same work everywhere.
/// </summary>
public sealed record PrepareSpec(
    string Kind,                    // "text", "fashion-mnist", "cifar10" or "images" (a folder of PNG/JPEG)
    IReadOnlyList<string> Inputs,   // files or folders (absolute paths)
    string Output,                  // output folder: shards and index.json
    string Tokenizer = "byte",      // text: "byte", "cl100k_base" or "o200k_base"
    bool CompactVocabulary = false, // text: renumber only the ids that occur, densely
    string? JsonField = null,       // text: JSONL inputs take their document from this field
    double ValidationFraction = 0.01, // share of documents (text) or samples (images) held out
    long ShardBytes = 64L << 20,    // target shard size; 64 MiB keeps a shard one quick mmap and checksum
    long Seed = 0);                 // for the train/validation split
