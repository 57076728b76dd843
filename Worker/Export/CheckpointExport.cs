using System.Globalization;
using System.Text.Json;
using Pretrain.Data.Shards;
using Pretrain.Shared.IO;
using Pretrain.Shared.Recipes;
using Pretrain.Worker.Training.Checkpoints;

namespace Pretrain.Worker.Export;

/// <summary>What an export takes from a checkpoint's <c>model.tensors</c>; optimizer state is never exported.</summary>
public enum ExportPart
{
    Encoder, // the encoder whose features evaluation probes, names without its prefix (simclr, moco, byol, mae)
    Model,   // every tensor of model.tensors, names as they are (gpt, bert; or a contrastive method's whole state)
}

/// <summary>What <see cref="CheckpointExport.Write"/> wrote.</summary>
public sealed record ExportReport(
    string Path,     // the safetensors file, absolute
    ExportPart Part, // encoder or model
    int Tensors,     // tensors in the file
    long Bytes,      // size of the file
    long Step);      // the checkpoint's step

/// <summary>
/// A verified checkpoint's weights as a safetensors file (<c>pretrain export</c>), copied as bytes from
/// <c>model.tensors</c> — no TorchSharp, no libtorch, no float conversion: every tensor reads back bit for bit.
/// <para>
/// The encoder's tensors lose their <c>encoder.</c> prefix (<c>encoder.layers.0.weight</c> → <c>layers.0.weight</c>), so the
/// file loads by name into the bare encoder module (<c>SmallCnn</c>, <c>ResNet18</c> with the same input channels), the
/// way torchvision and timm name a backbone's weights; the metadata's <c>name_prefix</c> says what was removed. Its
/// batch-norm running statistics come along: the encoder computes the probed features in eval mode with them.
/// </para>
/// </summary>
public static class CheckpointExport
{
    private static readonly JsonSerializerOptions ConfigJson = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    /// <summary>The part exported when none is asked for: the encoder of a method that has one, else the whole model.</summary>
    public static ExportPart DefaultPart(string method) => EncoderPrefix(method) is null ? ExportPart.Model : ExportPart.Encoder;

    /// <summary>
    /// The prefix of the encoder's tensors in a method's checkpoint, or null when the method has no encoder apart from
    /// its model. SimCLR's network, MoCo's query network and BYOL's online network are a <c>ContrastiveNetwork</c>:
    /// <c>encoder.*</c> then <c>head.*</c>. MoCo's key network (<c>key.encoder.*</c>) and BYOL's target network
    /// (<c>target.encoder.*</c>) are lagging momentum copies and not the ones evaluation probes, so they stay out, as
    /// does BYOL's <c>predictor.*</c>. MAE's ViT is <c>encoder.*</c> beside its <c>decoder.*</c>, which only
    /// pretraining needs, so it stays out too. GPT and BERT are whole models: export them with
    /// <see cref="ExportPart.Model"/>.
    /// </summary>
    public static string? EncoderPrefix(string method) => method switch
    {
        "simclr" or "moco" or "byol" or "mae" => "encoder.",
        _ => null,
    };

    /// <summary>The name of a part, as <c>--what</c> takes it and the metadata says it.</summary>
    public static string NameOf(ExportPart part) => part == ExportPart.Encoder ? "encoder" : "model";

    /// <summary>
    /// Writes <paramref name="part"/> of <paramref name="checkpoint"/> (trained with <paramref name="recipe"/>) to
    /// <paramref name="output"/> atomically: a temporary file in the same folder, fsynced, then renamed. An existing
    /// <paramref name="output"/> is replaced only when <paramref name="replace"/>; otherwise the rename fails and leaves
    /// it untouched. Throws <see cref="InvalidDataException"/> naming <c>model.tensors</c> and the tensor when one
    /// cannot be exported.
    /// </summary>
    public static ExportReport Write(VerifiedCheckpoint checkpoint, Recipe recipe, ExportPart part, string output, bool replace)
    {
        var modelPath = Path.Combine(checkpoint.Directory, CheckpointStore.ModelFile);
        var prefix = part == ExportPart.Model ? ""
            : EncoderPrefix(recipe.Method) ?? throw new ArgumentException($"method {recipe.Method} has no encoder apart from its model", nameof(part));
        var chosen = TensorFile.ReadIndex(modelPath).Where(e => e.Name.StartsWith(prefix, StringComparison.Ordinal)).ToList();
        if (chosen.Count == 0)
            throw new InvalidDataException($"{modelPath}: no tensor named {prefix}*; expected the {recipe.Method} encoder's tensors there");

        using var source = new FileStream(modelPath, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        var tensors = chosen.Select(entry => Describe(modelPath, entry, prefix, source)).ToList();
        var metadata = Metadata(checkpoint, recipe, part, prefix);
        var path = Path.GetFullPath(output);
        var bytes = WriteAtomically(path, replace, stream => SafetensorsWriter.Write(stream, tensors, metadata));
        return new ExportReport(path, part, tensors.Count, bytes, checkpoint.Manifest.Step);
    }

    /// <summary>The tensor of <paramref name="entry"/> under its exported name, checked: a dtype safetensors knows, and as many bytes as its shape needs.</summary>
    private static SafetensorsTensor Describe(string modelPath, TensorEntry entry, string prefix, Stream source)
    {
        var dtype = SafetensorsDtype.OfScalarType(entry.Dtype)
            ?? throw new InvalidDataException($"{modelPath}: tensor '{entry.Name}' has ScalarType code {entry.Dtype}, which safetensors has no dtype for");
        var tensor = new SafetensorsTensor(entry.Name[prefix.Length..], dtype, entry.Shape, source, entry.DataOffset);
        if (tensor.Bytes != entry.DataBytes)
            throw new InvalidDataException(
                $"{modelPath}: tensor '{entry.Name}' is {dtype.Name}[{string.Join(",", entry.Shape)}], {tensor.Bytes} bytes, but holds {entry.DataBytes}");
        return tensor;
    }

    /// <summary>
    /// <c>__metadata__</c>: what the weights are and where they came from. <c>format: pt</c> because names and layout are
    /// PyTorch's (Hugging Face loaders look for it); <c>model_config</c> is the recipe's <c>model:</c> section as JSON.
    /// </summary>
    private static Dictionary<string, string> Metadata(VerifiedCheckpoint checkpoint, Recipe recipe, ExportPart part, string prefix)
    {
        var metadata = new Dictionary<string, string>
        {
            ["format"] = "pt",
            ["exported_by"] = "pretrain",
            ["method"] = recipe.Method,
            ["part"] = NameOf(part),
            ["architecture"] = Architecture(recipe, part),
            ["model_config"] = JsonSerializer.Serialize(recipe.Model, recipe.Model.GetType(), ConfigJson),
            ["recipe_hash"] = checkpoint.Manifest.RecipeHash,
            ["step"] = checkpoint.Manifest.Step.ToString(CultureInfo.InvariantCulture),
        };
        if (prefix.Length > 0)
            metadata["name_prefix"] = prefix; // removed from every tensor name
        return metadata;
    }

    /// <summary>The network in a few words: "small-cnn" (an encoder), "resnet18 + projection head 512-128", "gpt transformer: 2 layers, …".</summary>
    private static string Architecture(Recipe recipe, ExportPart part) => recipe.Model switch
    {
        VisionModel vision when part == ExportPart.Encoder => vision.Encoder,
        VisionModel vision => $"{vision.Encoder} + projection head {vision.ProjectionHidden}-{vision.ProjectionDim}",
        VisionTransformerModel vit when part == ExportPart.Encoder => Vit(vit),
        VisionTransformerModel vit => $"{Vit(vit)} + mae decoder",
        TransformerModel t => $"{recipe.Method} transformer: {t.Layers} layers, {t.Heads} heads, width {t.Width}, context {t.Context}",
        _ => recipe.Model.GetType().Name,
    };

    private static string Vit(VisionTransformerModel vit) =>
        $"vit: {vit.PatchSize}-px patches, {vit.Layers} layers, {vit.Heads} heads, width {vit.Width}";

    /// <summary>Writes through <paramref name="write"/> into a temporary file beside <paramref name="path"/>, then renames it into place.</summary>
    private static long WriteAtomically(string path, bool replace, Func<Stream, long> write)
    {
        var folder = Path.GetDirectoryName(path)!;
        Directory.CreateDirectory(folder);
        var temporary = AtomicFile.StartTemporary(path);
        try
        {
            long bytes;
            using (var stream = new FileStream(temporary, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16))
            {
                bytes = write(stream);
                stream.Flush(flushToDisk: true); // durable data before the rename publishes it
            }
            // Without replace the rename refuses an existing file (link, not rename(2)), so one that appeared since the
            // caller looked is not clobbered either.
            File.Move(temporary, path, overwrite: replace);
            DirectorySync.Flush(folder);
            return bytes;
        }
        catch (Exception)
        {
            RemoveQuietly(temporary); // no half-written file left behind
            throw;
        }
    }

    /// <summary>Deletes <paramref name="path"/> if it is there; a failure to do so must not hide the error being raised.</summary>
    private static void RemoveQuietly(string path)
    {
        try { File.Delete(path); }
        catch (Exception e) when (IoErrors.IsFileSystem(e)) { }
    }
}
