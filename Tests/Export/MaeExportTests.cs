using Pretrain.Shared.Recipes;
using Pretrain.Tests.Methods;
using Pretrain.Tests.Training;
using Pretrain.Worker.Export;
using Pretrain.Worker.Models.Vision;
using Pretrain.Worker.Training.Checkpoints;
using Xunit;

namespace Pretrain.Tests.Export;

/// <summary>The encoder export of an MAE checkpoint: the ViT alone, under the bare module's names; the decoder stays out.</summary>
public class MaeExportTests
{
    [Fact]
    public async Task The_encoder_of_an_MAE_checkpoint_leaves_the_decoder_out_and_names_the_tensors_as_a_bare_vision_transformer()
    {
        var recipe = SmallMae.Recipe(steps: 2);
        var run = TestRecipes.TemporaryDirectory();
        await TrainerTests.Train(recipe, run);
        var checkpoint = CheckpointStore.Open(Path.Combine(run, "checkpoints", CheckpointStore.NameOf(2)));
        var output = Path.Combine(TestRecipes.TemporaryDirectory(), "encoder.safetensors");

        var report = CheckpointExport.Write(checkpoint, recipe, CheckpointExport.DefaultPart("mae"), output, replace: false);

        Assert.Equal(ExportPart.Encoder, report.Part);
        var file = SafetensorsReader.Read(output);
        using var bare = new VisionTransformer((VisionTransformerModel)recipe.Model, channels: 1, imageSize: 28, seed: 0);
        var names = bare.named_parameters().Select(p => p.name).Concat(bare.named_buffers().Select(b => b.name)).Order(StringComparer.Ordinal);
        Assert.Equal(names, file.Tensors.Select(t => t.Name).Order(StringComparer.Ordinal));
        Assert.Contains(file.Tensors, t => t.Name == "positions");                     // the fixed positions travel with the encoder
        Assert.DoesNotContain(file.Tensors, t => t.Name.Contains("decoder", StringComparison.Ordinal) || t.Name.Contains("maskToken", StringComparison.Ordinal));
        Assert.Equal("vit: 4-px patches, 2 layers, 4 heads, width 64", file.Metadata["architecture"]);
        Assert.Contains("\"patch_size\":4", file.Metadata["model_config"]);
    }
}
