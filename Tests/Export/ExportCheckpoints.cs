using Pretrain.Shared.Recipes;
using Pretrain.Tests.Methods;
using Pretrain.Tests.Training;
using Pretrain.Worker.Methods;
using Pretrain.Worker.Training;
using Pretrain.Worker.Training.Checkpoints;
using Xunit;
using static TorchSharp.torch;

namespace Pretrain.Tests.Export;

/// <summary>A tensor as the method that trained it holds it after loading a checkpoint.</summary>
public sealed record CheckpointTensor(ScalarType Dtype, long[] Shape, byte[] Bytes);

/// <summary>
/// Two real checkpoints, trained once for the export tests in a few seconds: MoCo on 2,000 Fashion-MNIST images
/// (an encoder with batch norm, a projection head, a momentum key network and a queue: the encoder export must pick
/// the right ones) and the tiny byte-level GPT (a whole model). Two steps each; the checkpoint is the one at the end.
/// </summary>
public sealed class ExportCheckpoints : IAsyncLifetime
{
    public const long Steps = 2;

    public Recipe MoCo { get; private set; } = null!;
    public string MoCoRun { get; private set; } = "";
    public Recipe Gpt { get; private set; } = null!;
    public string GptRun { get; private set; } = "";

    /// <summary>The checkpoint directory of step <see cref="Steps"/> in <paramref name="run"/>.</summary>
    public static string CheckpointOf(string run) => Path.Combine(run, "checkpoints", CheckpointStore.NameOf(Steps));

    public async Task InitializeAsync()
    {
        MoCo = SmallFashionMnist.Recipe(steps: Steps);
        MoCoRun = TestRecipes.TemporaryDirectory();
        await TrainerTests.Train(MoCo, MoCoRun);
        Gpt = TestRecipes.Tiny(t => TestRecipes.Set(TestRecipes.Set(t, "steps", Steps.ToString(System.Globalization.CultureInfo.InvariantCulture)), "warmup_steps", "1"));
        GptRun = TestRecipes.TemporaryDirectory();
        await TrainerTests.Train(Gpt, GptRun);
    }

    public Task DisposeAsync() => Task.CompletedTask;

    /// <summary>
    /// Every tensor of the checkpoint's model by name, read the way training reads it — a fresh method built from the
    /// recipe, loaded through <see cref="VerifiedCheckpoint.LoadModel"/> — and not through the exporter's raw index.
    /// </summary>
    public static Dictionary<string, CheckpointTensor> ModelTensors(Recipe recipe, string checkpoint)
    {
        using var method = MethodFactory.Create(new MethodContext(recipe, TimeSpan.FromSeconds(30), new StepPhases(), _ => { }));
        var named = method.Parameters.Select(p => (p.Name, (Tensor)p.Parameter)).Concat(method.State).ToList();
        using (no_grad())
            CheckpointStore.Open(checkpoint).LoadModel(named.ToDictionary(p => p.Item1, p => p.Item2));
        return named.ToDictionary(p => p.Item1, p => new CheckpointTensor(p.Item2.dtype, p.Item2.shape, p.Item2.bytes.ToArray()));
    }
}
