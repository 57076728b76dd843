using Pretrain.Worker.Collectives;
using System.Buffers.Binary;
using Pretrain.Data.Images;
using Pretrain.Data.Preparation;
using Pretrain.Shared.Recipes;
using Pretrain.Tests.Collectives;
using Pretrain.Tests.Training;
using Pretrain.Worker.Methods;
using Pretrain.Worker.Methods.Contrastive;
using Pretrain.Worker.Methods.Vision;
using Pretrain.Worker.Models.Vision;
using Pretrain.Worker.Training;
using Pretrain.Worker.Training.Checkpoints;
using Xunit;
using static TorchSharp.torch;

namespace Pretrain.Tests.Methods;

public class MoCoMethodTests
{
    [Fact]
    public async Task A_two_rank_step_enqueues_both_ranks_shuffle_BN_keys_in_rank_order_and_moves_the_key_network()
    {
        var recipe = SmallFashionMnist.Recipe(steps: 1);
        const int n = 32, world = 2, global = n * world;               // batch.global 64, 32 per rank
        const double momentum = 0.99;
        await using var harness = new RingHarness(world);
        var ring = await harness.ConnectAsync(1);
        var seen = await Task.WhenAll(Enumerable.Range(0, world).Select(rank => TrainingThread.Run($"moco-{rank}", async () =>
        {
            using var method = new MoCoMethod(new MethodContext(recipe, TimeSpan.FromSeconds(30), new StepPhases(), _ => { }));
            var ids = Enumerable.Range(rank * n, n).Select(i => (long)i * 7).ToArray();          // any ids; rank-major
            await method.ForwardBackwardAsync(new MicroBatch(Step: 3, 0, 1, ids, GlobalCount: global), new HostCommunicator(ring[rank]), CancellationToken.None);
            var keyBefore = method.KeyParameters.Select(t => t.clone()).ToArray();
            using (no_grad())                                                                // a stand-in optimizer step
                foreach (var (_, p) in method.Parameters)
                    p.add_(p.grad!.sign(), alpha: 0.01);
            var query = method.Parameters.Select(p => p.Parameter.detach().clone()).ToArray();
            method.AfterUpdate(3);
            var position = method.State.Single(s => s.Name == "queue_position").Tensor.item<long>();
            return (Queue: method.QueueKeys.clone(), Position: position, KeyBefore: keyBefore, Query: query,
                KeyAfter: method.KeyParameters.Select(t => t.clone()).ToArray());
        })));

        // Same queue on both ranks; the first G rows are the global batch's keys, recomputed here the reference way.
        Assert.True(seen[0].Queue.eq(seen[1].Queue).all().item<bool>());
        Assert.All(seen, s => Assert.Equal(global, s.Position));
        using var expected = ShuffleBnKeys(recipe, step: 3, n, world, shuffle: true);
        Assert.True(seen[0].Queue.narrow(0, 0, global).allclose(expected, rtol: 1e-4, atol: 1e-5), "queue rows are not the shuffle-BN keys in rank order");
        using var unshuffled = ShuffleBnKeys(recipe, step: 3, n, world, shuffle: false);
        Assert.False(expected.allclose(unshuffled, rtol: 1e-4, atol: 1e-5), "shuffling changed no key: the test would not see a missing shuffle");
        using var initial = new MoCoQueue(512, 64, recipe.Seed);
        Assert.True(seen[0].Queue.narrow(0, global, 512 - global).eq(initial.Keys.narrow(0, global, 512 - global)).all().item<bool>());

        // θk ← m·θk + (1−m)·θq, with θq after the update, on every rank.
        foreach (var s in seen)
            for (var i = 0; i < s.Query.Length; i++)
            {
                using var want = s.KeyBefore[i] * momentum + s.Query[i] * (1 - momentum);
                Assert.True(s.KeyAfter[i].allclose(want, rtol: 1e-5, atol: 1e-7), $"key tensor {i} is not the momentum average");
            }
        Assert.Contains(seen[0].Query.Zip(seen[0].KeyBefore), p => !p.Item1.eq(p.Item2).all().item<bool>()); // the update moved something
    }

    /// <summary>
    /// The keys of a 2-rank micro-step computed in one place, as MoCo's reference does: gather the key
    /// views, permute, encode each rank's slice with the (initial) key network in train mode, unshuffle.
    /// </summary>
    private static Tensor ShuffleBnKeys(Recipe recipe, long step, int n, int world, bool shuffle)
    {
        using var scope = NewDisposeScope();
        var shape = (VisionModel)recipe.Model;
        var data = (ImageData)recipe.Data;
        using var images = new ImageBatch(data.ImagesPath, "train", n * world);
        var ids = Enumerable.Range(0, n * world).Select(i => (long)i * 7).ToArray();
        using var batch = images.Load(ids);
        var views = Augmentations.For(recipe.Augment!, images.Height, recipe.Seed).Augment(batch, ids, step, view: 1);
        using var key = MethodFactory.Seeded(recipe.Seed, () => new ContrastiveNetwork(shape, images.Channels, headBatchNorm: false));
        key.train();
        var permutation = shuffle ? MoCoMethod.ShufflePermutation(recipe.Seed, step, 0, n * world) : arange(n * world, dtype: int64);
        var shuffled = views.index_select(0, permutation);
        using var noGrad = no_grad();
        var keys = cat(Enumerable.Range(0, world).Select(r => nn.functional.normalize(key.forward(shuffled.narrow(0, r * n, n)), p: 2, dim: 1)).ToArray(), 0);
        return zeros_like(keys).index_copy_(0, permutation, keys).MoveToOuterDisposeScope();
    }

    [Fact]
    public async Task Two_workers_learn_features_that_beat_chance_with_identical_replicas()
    {
        var recipe = SmallFashionMnist.Recipe(steps: 30);
        var (results, losses) = await SmallFashionMnist.TrainRing(recipe, TestRecipes.TemporaryDirectory(), long.MaxValue, resume: false);
        Assert.Equal(results[0].ReplicaChecksum, results[1].ReplicaChecksum);
        // The loss starts low against a queue of random vectors (~2.0) and climbs towards ln(K + 1) = 6.2 while
        // real keys fill it (K / G = 8 steps); learning shows as its fall from that peak (5.68 → 5.46 here).
        var peak = losses.Skip(5).Take(8).Max();
        var last = losses.TakeLast(4).Average();
        Assert.True(last < peak - 0.1, $"peak loss after the queue filled {peak:F3}, at the end {last:F3}; losses: {string.Join(", ", losses.Select(l => l.ToString("F2")))}");
        Assert.Equal(results[0].Eval["knn_accuracy"], results[1].Eval["knn_accuracy"]);
        Assert.True(results[0].Eval["knn_accuracy"] > 0.4, $"kNN accuracy {results[0].Eval["knn_accuracy"]} (chance 0.1)");
    }

    [Fact]
    public async Task A_run_resumed_from_a_checkpoint_ends_with_the_same_parameters_key_network_and_queue()
    {
        var recipe = SmallFashionMnist.Recipe(steps: 6, checkpointEvery: 3);
        var whole = TestRecipes.TemporaryDirectory();
        var (uninterrupted, _) = await SmallFashionMnist.TrainRing(recipe, whole, long.MaxValue, resume: false);
        var split = TestRecipes.TemporaryDirectory();
        await SmallFashionMnist.TrainRing(recipe, split, maxSteps: 3, resume: false);
        var (resumed, _) = await SmallFashionMnist.TrainRing(recipe, split, long.MaxValue, resume: true);

        Assert.Equal(uninterrupted[0].ReplicaChecksum, resumed[0].ReplicaChecksum);
        Assert.Equal(resumed[0].ReplicaChecksum, resumed[1].ReplicaChecksum);
        var a = FinalState(recipe, whole);
        var b = FinalState(recipe, split);
        foreach (var name in new[] { "queue", "queue_position" }.Concat(a.Keys.Where(k => k.StartsWith("key.", StringComparison.Ordinal))))
            Assert.True(a[name].eq(b[name]).all().item<bool>(), $"{name} differs after resume");
        Assert.Equal(6 * 64 % 512, a["queue_position"].item<long>());   // 384: not the initial 0
    }

    /// <summary>The State of the newest checkpoint of <paramref name="run"/>, loaded into a fresh method.</summary>
    private static Dictionary<string, Tensor> FinalState(Recipe recipe, string run)
    {
        using var method = new MoCoMethod(new MethodContext(recipe, TimeSpan.FromSeconds(30), new StepPhases(), _ => { }));
        var checkpoint = new CheckpointStore(run, _ => { }).FindNewest(recipe.Source.Hash) ?? throw new InvalidOperationException($"no checkpoint in {run}");
        Assert.Equal(6, checkpoint.State.Step);
        checkpoint.LoadModel(method.Parameters.Select(p => (p.Name, (Tensor)p.Parameter)).Concat(method.State).ToDictionary(p => p.Item1, p => p.Item2));
        return method.State.ToDictionary(s => s.Name, s => s.Tensor.clone());
    }
}

/// <summary>
/// 2,000 train and 500 test images of Fashion-MNIST (the first of each split of Debian's
/// dataset-fashion-mnist), prepared once per test process, and a small MoCo (or SimCLR, or BYOL) recipe over them.
/// </summary>
internal static class SmallFashionMnist
{
    private const int TrainImages = 2000, TestImages = 500;
    private static readonly Lazy<string> Prepared = new(Prepare);

    /// <summary>The prepared folder: 2,000 train and 500 test images of the real Fashion-MNIST.</summary>
    public static string Folder => Prepared.Value;

    public static Recipe Recipe(long steps, long checkpointEvery = 1000, string method = "moco")
    {
        if (method == "mae")
            return SmallMae.Recipe(steps, checkpointEvery);
        TorchThreads.Configure(workersOnThisMachine: Environment.ProcessorCount);
        var methodSection = method switch
        {
            "moco" => "moco:\n  temperature: 0.2\n  queue_size: 512\n  momentum: 0.99",
            "byol" => "byol:\n  momentum_base: 0.99\n  predictor_hidden: 128",
            _ => "simclr:\n  temperature: 0.2",
        };
        var optimizer = method == "moco"
            ? "optimizer:\n  name: adamw\n  lr: 0.002\n  min_lr: 0.0002\n  weight_decay: 0.0001"
            : "optimizer:\n  name: lars\n  lr: 0.6\n  min_lr: 0.0\n  weight_decay: 1.0e-6";
        var text = $"""
            method: {method}
            seed: 7
            steps: {steps}
            data:
              images: {Prepared.Value}
            model:
              encoder: small-cnn
              projection_hidden: 128
              projection_dim: 64
            {methodSection}
            augment:
              crop_scale: [0.3, 1.0]
              flip_probability: 0.5
              jitter_probability: 0.8
              brightness: 0.4
              contrast: 0.4
              grayscale_probability: 0
              blur_probability: 0
            {optimizer}
            schedule:
              warmup_steps: 1
            batch:
              global: 64
            checkpoint:
              every: {checkpointEvery}
              keep: 3
            eval:
              knn_k: 20
            """;
        return RecipeLoader.Parse(text, Path.Combine(TestRecipes.RepositoryRoot, "recipes", $"{method}-test.yaml"));
    }

    /// <summary>Trains 2 ranks over a loopback ring in <paramref name="run"/>; returns their results and rank 0's step losses.</summary>
    public static async Task<(TrainingResult[] Results, List<double> Losses)> TrainRing(Recipe recipe, string run, long maxSteps, bool resume)
    {
        await using var harness = new RingHarness(2);
        var ring = await harness.ConnectAsync(1);
        var losses = new List<double>();
        var results = await Task.WhenAll(Enumerable.Range(0, 2).Select(async rank =>
        {
            using var trainer = new Trainer(recipe, rank, 2, ring[rank], run, _ => { });
            var progress = rank == 0 ? new SynchronousProgress<StepReport>(s => losses.Add(s.Loss)) : null;
            return await trainer.RunAsync(maxSteps, resume, progress, CancellationToken.None);
        }));
        return (results, losses);
    }

    private static string Prepare()
    {
        var root = Path.Combine(Path.GetTempPath(), "pretrain-tests", "fashion-mnist-small-" + Guid.NewGuid().ToString("N"));
        var idx = Path.Combine(root, "idx");
        Directory.CreateDirectory(idx);
        var source = "/usr/share/datasets/fashion-mnist";
        foreach (var (name, count) in new[] { ("train", TrainImages), ("t10k", TestImages) })
        {
            var (_, rows, columns, pixels) = IdxFile.ReadImages(Path.Combine(source, $"{name}-images-idx3-ubyte.gz"));
            var labels = IdxFile.ReadLabels(Path.Combine(source, $"{name}-labels-idx1-ubyte.gz"));
            WriteIdx(Path.Combine(idx, $"{name}-images-idx3-ubyte"), [count, rows, columns], pixels.AsSpan(0, count * rows * columns));
            WriteIdx(Path.Combine(idx, $"{name}-labels-idx1-ubyte"), [count], labels.AsSpan(0, count));
        }
        var output = Path.Combine(root, "prepared");
        var plan = PreparationPlans.Create(new PrepareSpec("fashion-mnist", [idx], output));
        foreach (var task in plan.Tasks)
            plan.Run(task, null, CancellationToken.None);
        plan.Finish();
        return output;
    }

    /// <summary>An uncompressed idx file: magic 0x00000800 + rank, big-endian sizes, then the bytes.</summary>
    private static void WriteIdx(string path, int[] sizes, ReadOnlySpan<byte> data)
    {
        using var file = File.Create(path);
        Span<byte> word = stackalloc byte[4];
        BinaryPrimitives.WriteInt32BigEndian(word, 0x0800 + sizes.Length);
        file.Write(word);
        foreach (var size in sizes)
        {
            BinaryPrimitives.WriteInt32BigEndian(word, size);
            file.Write(word);
        }
        file.Write(data);
    }
}
