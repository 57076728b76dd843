using Pretrain.Cli;
using Pretrain.Cli.Commands;
using Pretrain.Tests.Training;
using Pretrain.Worker.Models.Vision;
using Pretrain.Worker.Training.Checkpoints;
using Xunit;
using static TorchSharp.torch;

namespace Pretrain.Tests.Export;

/// <summary>
/// <c>pretrain export</c> (issue 16, item 4), through the real command line in this process: real checkpoints out as
/// safetensors, read back by <see cref="SafetensorsReader"/> (written from the specification, apart from the writer)
/// and compared tensor for tensor — name, dtype, shape and every byte — with the checkpoint as training loads it.
/// </summary>
public sealed class ExportTests(ExportCheckpoints checkpoints) : IClassFixture<ExportCheckpoints>
{
    [Fact]
    public async Task The_encoder_of_a_MoCo_checkpoint_reads_back_tensor_for_tensor_under_the_bare_encoders_names()
    {
        var output = Path.Combine(TestRecipes.TemporaryDirectory(), "encoder.safetensors");
        var (code, text) = await RunCliAsync("export", "--checkpoint", ExportCheckpoints.CheckpointOf(checkpoints.MoCoRun), "--out", output);
        Assert.True(code == 0, text);

        var file = SafetensorsReader.Read(output);
        var model = ExportCheckpoints.ModelTensors(checkpoints.MoCo, ExportCheckpoints.CheckpointOf(checkpoints.MoCoRun));
        // Only the query encoder: not the head, not the momentum key network (key.encoder.*), not the queue.
        var encoder = model.Where(t => t.Key.StartsWith("encoder.", StringComparison.Ordinal))
            .ToDictionary(t => t.Key["encoder.".Length..], t => t.Value);
        AssertSameTensors(encoder, file);
        Assert.Contains(file.Tensors, t => t.Dtype == "I64"); // batch norm's num_batches_tracked: not only float32 went through
        Assert.Contains($"{file.Tensors.Count} tensors", text);
        Assert.Contains(output, text);

        // The names are those of the bare encoder module, so the file loads into one by name.
        using var bare = new SmallCnn(inputChannels: 1);
        var shapes = bare.named_parameters().Select(p => (p.name, p.parameter.shape))
            .Concat(bare.named_buffers().Select(b => (b.name, b.buffer.shape))).ToList();
        Assert.Equal(shapes.Select(s => s.name).Order(StringComparer.Ordinal), file.Tensors.Select(t => t.Name).Order(StringComparer.Ordinal));
        foreach (var (name, shape) in shapes)
            Assert.Equal(shape, file[name].Shape);
    }

    [Fact]
    public async Task The_whole_GPT_model_of_the_newest_checkpoint_of_a_run_reads_back_tensor_for_tensor_by_default()
    {
        var output = Path.Combine(TestRecipes.TemporaryDirectory(), "gpt.safetensors");
        var (code, text) = await RunCliAsync("export", "--run-dir", checkpoints.GptRun, "--out", output);
        Assert.True(code == 0, text);

        var file = SafetensorsReader.Read(output);
        AssertSameTensors(ExportCheckpoints.ModelTensors(checkpoints.Gpt, ExportCheckpoints.CheckpointOf(checkpoints.GptRun)), file);
        Assert.Equal("model", file.Metadata["part"]);
        Assert.Equal("gpt", file.Metadata["method"]);
        Assert.DoesNotContain("name_prefix", file.Metadata.Keys); // a whole model keeps its names
    }

    [Fact]
    public async Task The_model_of_a_MoCo_checkpoint_holds_its_key_network_and_queue_but_no_optimizer_state()
    {
        var output = Path.Combine(TestRecipes.TemporaryDirectory(), "moco.safetensors");
        var (code, text) = await RunCliAsync("export", "--checkpoint", ExportCheckpoints.CheckpointOf(checkpoints.MoCoRun), "--what", "model", "--out", output);
        Assert.True(code == 0, text);

        var file = SafetensorsReader.Read(output);
        AssertSameTensors(ExportCheckpoints.ModelTensors(checkpoints.MoCo, ExportCheckpoints.CheckpointOf(checkpoints.MoCoRun)), file);
        Assert.Contains(file.Tensors, t => t.Name.StartsWith("key.encoder.", StringComparison.Ordinal));
        Assert.Contains(file.Tensors, t => t.Name == "queue");
        Assert.DoesNotContain(file.Tensors, t => t.Name.StartsWith("m.", StringComparison.Ordinal) || t.Name.StartsWith("v.", StringComparison.Ordinal));
    }

    [Fact]
    public async Task The_data_starts_8_byte_aligned_and_the_metadata_names_the_architecture_recipe_hash_and_step()
    {
        var checkpoint = ExportCheckpoints.CheckpointOf(checkpoints.MoCoRun);
        var output = Path.Combine(TestRecipes.TemporaryDirectory(), "encoder.safetensors");
        var (code, text) = await RunCliAsync("export", "--checkpoint", checkpoint, "--out", output);
        Assert.True(code == 0, text);

        var file = SafetensorsReader.Read(output);
        Assert.Equal(0UL, (8 + file.HeaderLength) % 8);
        // Largest elements first: every tensor starts at a multiple of its own element size, readable in place.
        Assert.All(file.Tensors, t => Assert.Equal(0L, t.Begin % (t.Dtype == "I64" ? 8 : 4)));
        Assert.Equal(new FileInfo(output).Length, 8 + (long)file.HeaderLength + file.Tensors.Sum(t => t.Data.LongLength));
        var whole = File.ReadAllBytes(output);
        Assert.Throws<InvalidDataException>(() => SafetensorsReader.Parse(whole[..^1], output)); // the reader sees a byte missing

        var manifest = CheckpointStore.Open(checkpoint).Manifest;
        Assert.Equal(checkpoints.MoCo.Source.Hash, manifest.RecipeHash);
        Assert.Equal(manifest.RecipeHash, file.Metadata["recipe_hash"]);
        Assert.Equal(ExportCheckpoints.Steps.ToString(System.Globalization.CultureInfo.InvariantCulture), file.Metadata["step"]);
        Assert.Equal("moco", file.Metadata["method"]);
        Assert.Equal("small-cnn", file.Metadata["architecture"]);
        Assert.Equal("encoder", file.Metadata["part"]);
        Assert.Equal("encoder.", file.Metadata["name_prefix"]);
        Assert.Equal("pretrain", file.Metadata["exported_by"]);
        Assert.Contains("\"projection_dim\":64", file.Metadata["model_config"]);
    }

    [Fact]
    public async Task A_corrupted_checkpoint_is_refused_with_exit_2_naming_the_file_and_nothing_is_written()
    {
        var copy = Path.Combine(TestRecipes.TemporaryDirectory(), "checkpoints", CheckpointStore.NameOf(ExportCheckpoints.Steps));
        Directory.CreateDirectory(copy);
        foreach (var file in Directory.GetFiles(ExportCheckpoints.CheckpointOf(checkpoints.MoCoRun)))
            File.Copy(file, Path.Combine(copy, Path.GetFileName(file)));
        var weights = Path.Combine(copy, CheckpointStore.ModelFile);
        var bytes = File.ReadAllBytes(weights);
        bytes[bytes.Length / 2] ^= 0x01;
        File.WriteAllBytes(weights, bytes);

        var folder = TestRecipes.TemporaryDirectory();
        var output = Path.Combine(folder, "encoder.safetensors");
        var (code, text) = await RunCliAsync("export", "--checkpoint", copy, "--out", output);
        Assert.True(code == 2, text);
        Assert.Contains(weights, text);
        Assert.Contains("checksum mismatch", text);
        Assert.Empty(Directory.GetFileSystemEntries(folder)); // neither the file nor a temporary one
    }

    [Fact]
    public async Task An_existing_out_is_refused_without_force_and_left_untouched_and_replaced_with_force()
    {
        var output = Path.Combine(TestRecipes.TemporaryDirectory(), "encoder.safetensors");
        File.WriteAllText(output, "an earlier export");
        var checkpoint = ExportCheckpoints.CheckpointOf(checkpoints.MoCoRun);

        var (code, text) = await RunCliAsync("export", "--checkpoint", checkpoint, "--out", output);
        Assert.True(code == 2, text);
        Assert.Contains(output, text);
        Assert.Contains("--force", text);
        Assert.Equal("an earlier export", File.ReadAllText(output));

        (code, text) = await RunCliAsync("export", "--checkpoint", checkpoint, "--out", output, "--force");
        Assert.True(code == 0, text);
        Assert.NotEmpty(SafetensorsReader.Read(output).Tensors);
        Assert.Single(Directory.GetFileSystemEntries(Path.GetDirectoryName(output)!)); // no temporary file left beside it
    }

    [Fact]
    public async Task Asking_for_the_encoder_of_a_GPT_checkpoint_exits_2_and_says_to_export_the_model()
    {
        var output = Path.Combine(TestRecipes.TemporaryDirectory(), "encoder.safetensors");
        var (code, text) = await RunCliAsync("export", "--checkpoint", ExportCheckpoints.CheckpointOf(checkpoints.GptRun), "--what", "encoder", "--out", output);
        Assert.True(code == 2, text);
        Assert.Contains("--what model", text);
        Assert.False(File.Exists(output));
    }

    /// <summary>Same names, and for each the same dtype, shape and bytes.</summary>
    private static void AssertSameTensors(IReadOnlyDictionary<string, CheckpointTensor> expected, SafetensorsContent file)
    {
        Assert.Equal(expected.Keys.Order(StringComparer.Ordinal), file.Tensors.Select(t => t.Name).Order(StringComparer.Ordinal));
        foreach (var tensor in file.Tensors)
        {
            var want = expected[tensor.Name];
            Assert.True(want.Dtype == DtypeOf(tensor.Dtype), $"{tensor.Name}: {tensor.Dtype} in the file, {want.Dtype} in the checkpoint");
            Assert.Equal(want.Shape, tensor.Shape);
            Assert.True(want.Bytes.AsSpan().SequenceEqual(tensor.Data), $"{tensor.Name}: the bytes differ from the checkpoint's");
        }
    }

    /// <summary>The dtypes our models hold, by their safetensors names.</summary>
    private static ScalarType DtypeOf(string safetensors) => safetensors switch
    {
        "F32" => ScalarType.Float32,
        "I64" => ScalarType.Int64,
        _ => throw new InvalidOperationException($"dtype {safetensors}: no model of ours holds one"),
    };

    /// <summary>
    /// The real CLI in this process, its output captured (test collections run one at a time: xunit.runner.json). On a
    /// pool thread, so the command's awaits do not come back through the test's synchronization context.
    /// </summary>
    private static async Task<(int Code, string Output)> RunCliAsync(params string[] args)
    {
        var (stdout, stderr) = (Console.Out, Console.Error);
        using var captured = new StringWriter();
        Console.SetOut(captured);
        Console.SetError(captured);
        try
        {
            var code = await Task.Run(() => Program.Run(args, PlanCatalog.Product));
            return (code, captured.ToString());
        }
        finally
        {
            Console.SetOut(stdout);
            Console.SetError(stderr);
        }
    }
}
