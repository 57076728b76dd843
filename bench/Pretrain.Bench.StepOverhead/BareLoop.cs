using System.Diagnostics;
using System.Runtime.InteropServices;
using Pretrain.Data;
using Pretrain.Data.Sampling;
using Pretrain.Data.Text;
using Pretrain.Shared.Recipes;
using Pretrain.Worker.Methods;
using Pretrain.Worker.Methods.Contrastive;
using Pretrain.Worker.Methods.Vision;
using Pretrain.Worker.Models;
using Pretrain.Worker.Models.Vision;
using Pretrain.Worker.Training;
using Pretrain.Worker.Training.Optimizers;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pretrain.Bench.StepOverhead;

/// <summary>
/// The baseline: the recipe's model, loss and optimizer in the plainest TorchSharp loop — forward, backward, clip
/// (when the recipe clips), optimizer step, zero the gradients — over the same global batches our sampler draws,
/// loaded (and, for SimCLR, augmented) into tensors before the clock starts. It has no data path, no collectives,
/// no metrics and no fault handling: whatever our Trainer spends on those counts as its overhead. The models, the
/// NT-Xent reference and the optimizers are ours, so only the loop around them differs.
/// </summary>
public static class BareLoop
{
    public static StepWindow Run(Recipe recipe, int warmup, int steps) => recipe.Method switch
    {
        "gpt" => CausalLm(recipe, warmup, steps),
        "simclr" => SimClr(recipe, warmup, steps),
        var other => throw new NotSupportedException($"no bare loop for method '{other}' (gpt and simclr have one)"),
    };

    /// <summary>GPT: next-token cross-entropy over windows of context + 1 tokens, as <c>CausalLmMethod</c> reads them.</summary>
    private static StepWindow CausalLm(Recipe recipe, int warmup, int steps)
    {
        var shape = recipe.Transformer;
        ITokenCorpus corpus = recipe.Data switch
        {
            TextData text => new ByteTextCorpus(text.TextPath, shape.Context, text.ValidationFraction),
            TokenData tokens => new PreparedTextCorpus(tokens.TokensPath, shape.Context),
            var other => throw new ArgumentException($"gpt trains on text, not {other.GetType().Name}"),
        };
        var vocabulary = corpus.VocabularySize;
        var batches = new Tensor[warmup + steps];                                    // (B, T + 1) int64 each
        using (corpus)
        {
            var sampler = new GlobalBatchSampler(recipe.Seed, corpus.TrainSamples, recipe.Batch.Global);
            var ids = new long[recipe.Batch.Global];
            int row = shape.Context + 1;
            for (var s = 0; s < batches.Length; s++)
            {
                sampler.GlobalBatchOf(s, ids);
                batches[s] = zeros(ids.Length, row, dtype: ScalarType.Int64);
                var tokens = MemoryMarshal.Cast<byte, long>(batches[s].bytes);
                for (var i = 0; i < ids.Length; i++)
                    corpus.Window(Split.Train, ids[i], tokens.Slice(i * row, row));
            }
        }
        try
        {
            using var model = new Gpt(shape, recipe.Seed, vocabulary);
            return Loop(recipe, model, Gpt.UsesWeightDecay, warmup, steps, step =>
                model.Loss(batches[step].narrow(1, 0, shape.Context), batches[step].narrow(1, 1, shape.Context)));   // (B, T) each → scalar
        }
        finally
        {
            foreach (var b in batches) b.Dispose();
        }
    }

    /// <summary>
    /// SimCLR: both views of every image through the network at once, NT-Xent over the batch (<see cref="NtXent.Loss"/>,
    /// the single-process reference our distributed loss is tested against). Batch norm is torch's own BatchNorm2d:
    /// on one worker it computes what our global batch norm does.
    /// </summary>
    private static StepWindow SimClr(Recipe recipe, int warmup, int steps)
    {
        var options = (ContrastiveOptions)recipe.Options;
        var views = new Tensor[warmup + steps];                                      // (2B, C, H, W) float32 each
        int channels;
        using (var images = new ImageBatch(((ImageData)recipe.Data).ImagesPath, "train", recipe.Batch.Global))
        {
            channels = images.Channels;
            var augmenter = Augmentations.For(recipe.Augment!, images.Height, recipe.Seed);
            var sampler = new GlobalBatchSampler(recipe.Seed, images.Count, recipe.Batch.Global);
            var ids = new long[recipe.Batch.Global];
            for (var s = 0; s < views.Length; s++)
            {
                sampler.GlobalBatchOf(s, ids);
                using var raw = images.Load(ids);                                   // (B, C, H, W) uint8
                views[s] = augmenter.BothViews(raw, ids, s);
            }
        }
        try
        {
            using var network = MethodFactory.Seeded(recipe.Seed, () => new ContrastiveNetwork((VisionModel)recipe.Model, channels, headBatchNorm: true));
            return Loop(recipe, network, (_, p) => p.dim() > 1, warmup, steps, step =>   // SimCLR's exclusions: biases and BN
            {
                var z = network.forward(views[step]);                                    // (2B, d)
                var n = z.shape[0] / 2;
                return NtXent.Loss(z.narrow(0, 0, n), z.narrow(0, n, n), options.Temperature);
            });
        }
        finally
        {
            foreach (var v in views) v.Dispose();
        }
    }

    /// <summary>
    /// The loop itself, timed as <see cref="StepProbe"/> times ours: from the end of one step to the end of the next,
    /// with forward, backward and the rest (clip, optimizer, zeroing, freeing the step's tensors) as phases.
    /// </summary>
    private static StepWindow Loop(Recipe recipe, nn.Module model, Func<string, Tensor, bool> decays, int warmup, int steps, Func<long, Tensor> loss)
    {
        var named = model.named_parameters().Select(p => (p.name, p.parameter)).ToArray();
        Parameter[] parameters = [.. named.Select(p => p.parameter)];
        IEnumerable<Parameter> clipped = parameters;                                 // the overload over parameters, whatever others exist
        using var optimizer = OptimizerFactory.Create(recipe.Optimizer, named, decays);
        var schedule = new LrSchedule(recipe.Optimizer.Lr, recipe.Optimizer.MinLr, recipe.Schedule.WarmupSteps, recipe.Steps);
        var clip = recipe.Optimizer.GradClip;
        model.train();

        var stepMs = new List<double>(steps);
        double forward = 0, backward = 0, rest = 0;                                  // seconds over the measured steps
        CpuTimes cpuAtStart = default;
        long start = 0, previous = 0;
        for (var step = 0; step < warmup + steps; step++)
        {
            var began = Stopwatch.GetTimestamp();
            long forwardDone, backwardDone;
            using (NewDisposeScope())
            {
                var value = loss(step);                                              // scalar
                forwardDone = Stopwatch.GetTimestamp();
                value.backward();
                _ = value.item<float>();                                             // the loss a loop reports
                backwardDone = Stopwatch.GetTimestamp();
                if (clip > 0) nn.utils.clip_grad_norm_(clipped, clip);
                optimizer.Update(schedule.At(step));
                // In place, as our Trainer does: set_to_none would make the baseline allocate every gradient anew each step.
                foreach (var p in parameters)
                {
                    using var grad = p.grad;
                    grad?.zero_();
                }
            }
            var now = Stopwatch.GetTimestamp();
            if (step == warmup - 1)
                (cpuAtStart, start) = (CpuTimes.OfThisProcess(), now);
            else if (step >= warmup)
            {
                stepMs.Add(Stopwatch.GetElapsedTime(previous, now).TotalMilliseconds);
                forward += Stopwatch.GetElapsedTime(began, forwardDone).TotalSeconds;
                backward += Stopwatch.GetElapsedTime(forwardDone, backwardDone).TotalSeconds;
                rest += Stopwatch.GetElapsedTime(backwardDone, now).TotalSeconds;
            }
            previous = now;
        }
        var cpu = CpuTimes.OfThisProcess() - cpuAtStart;
        double[] phaseMs = [0, forward / steps * 1e3, backward / steps * 1e3, 0, rest / steps * 1e3];   // data, forward, backward, allreduce, optimizer
        return new StepWindow([.. stepMs], Stopwatch.GetElapsedTime(start, previous).TotalSeconds, phaseMs, cpu);
    }
}
