using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Pretrain.Data.Sampling;

namespace Pretrain.Tests.Data;

/// <summary>
/// Issue 3's sampler properties: within an epoch no sample is repeated or skipped for any world size
/// 1–16, any resume point and any sequence of world-size changes. Runs are bounded (≤ 40 samples,
/// ≤ 3 segments, 100 cases per property) so the class takes well under a second of sampling.
/// </summary>
public class SamplerPropertyTests
{
    /// <summary>
    /// A job that resumes at <see cref="ResumeStep"/> and then trains <see cref="Steps"/>[i] steps at
    /// world size <see cref="Worlds"/>[i], restarting (a fresh sampler, state carried only as
    /// (epoch, sample_in_epoch)) at every change of world size.
    /// </summary>
    public sealed record Run(long Seed, int Samples, int Batch, int[] Worlds, int[] Steps, int ResumeStep)
    {
        public override string ToString() =>
            $"Run(seed {Seed}, samples {Samples}, batch {Batch}, worlds [{string.Join(",", Worlds)}], steps [{string.Join(",", Steps)}], resume {ResumeStep})";
    }

    private static readonly Arbitrary<Run> Runs = Arb.From(
        from seed in Gen.Choose(0, 1_000_000)
        from samples in Gen.Choose(1, 40)
        from segments in Gen.Choose(1, 3)
        from worlds in Gen.ArrayOf(Gen.Choose(1, 16), segments)
        from multiple in Gen.Choose(1, 2)
        let batch = worlds.Aggregate(1, Lcm) * multiple // every world size in the run divides the global batch
        let stepsForTwoEpochs = 2 * samples / batch + 2  // long enough that most runs cover whole epochs
        from steps in Gen.ArrayOf(Gen.Choose(0, stepsForTwoEpochs), segments)
        from resume in Gen.Choose(0, 3 * samples / batch + 3)
        select new Run(seed, samples, batch, worlds, steps, resume));

    private static readonly Arbitrary<(int Samples, int Batch, long Step)> Positions = Arb.From(
        from samples in Gen.Choose(1, 1000)
        from batch in Gen.Choose(1, 256)
        from step in Gen.Choose(0, 100_000)
        select (samples, batch, (long)step));

    [Property(MaxTest = 100)]
    public Property No_sample_is_repeated_or_skipped_within_an_epoch_across_resumes_and_world_size_changes() =>
        Prop.ForAll(Runs, run =>
        {
            var consumed = Consume(run);
            var start = (long)run.ResumeStep * run.Batch;
            // Group the consumed ids by the epoch of their position in the concatenated order.
            foreach (var epoch in consumed.Select((id, i) => (id, Epoch: (start + i) / run.Samples)).GroupBy(x => x.Epoch))
            {
                var ids = epoch.Select(x => x.id).ToArray();
                if (ids.Distinct().Count() != ids.Length)
                    return false; // a repeat within an epoch
                var first = Math.Max(start, epoch.Key * run.Samples);
                var end = Math.Min(start + consumed.Count, (epoch.Key + 1) * run.Samples);
                var whole = first == epoch.Key * run.Samples && end == (epoch.Key + 1) * run.Samples;
                if (whole && !ids.Order().SequenceEqual(Enumerable.Range(0, run.Samples).Select(i => (long)i)))
                    return false; // a whole epoch that skipped a sample
            }
            return true;
        });

    [Property(MaxTest = 100)]
    public Property World_size_changes_keep_the_global_batch_of_an_uninterrupted_run() =>
        Prop.ForAll(Runs, run =>
        {
            var consumed = Consume(run);
            var uninterrupted = new GlobalBatchSampler(run.Seed, run.Samples, run.Batch);
            var start = (long)run.ResumeStep * run.Batch;
            return consumed.Select((id, i) => id == uninterrupted.At(start + i)).All(same => same);
        });

    [Property(MaxTest = 100)]
    public Property Step_and_epoch_position_convert_both_ways() =>
        Prop.ForAll(Positions, p =>
        {
            var sampler = new GlobalBatchSampler(1, p.Samples, p.Batch);
            var position = sampler.PositionOf(p.Step);
            return position.SampleInEpoch < p.Samples
                && position.Epoch * p.Samples + position.SampleInEpoch == p.Step * p.Batch
                && position.Epoch == sampler.EpochOf(p.Step)
                && sampler.StepOf(position) == p.Step;
        });

    [Property(MaxTest = 100)]
    public Property A_position_inside_a_global_batch_is_not_a_resume_point() =>
        Prop.ForAll(Positions, p =>
        {
            var sampler = new GlobalBatchSampler(1, p.Samples, p.Batch);
            var inside = p.Step * p.Batch + 1; // one past a step's start; a step start only if the batch is 1
            var position = new SamplePosition(inside / p.Samples, inside % p.Samples);
            if (p.Batch == 1)
                return sampler.StepOf(position) == p.Step + 1;
            try { sampler.StepOf(position); return false; }
            catch (ArgumentException) { return true; }
        });

    /// <summary>Every id the ranks of <paramref name="run"/> train on, in (step, rank) order.</summary>
    private static List<long> Consume(Run run)
    {
        var consumed = new List<long>();
        var resumeAt = new GlobalBatchSampler(run.Seed, run.Samples, run.Batch).PositionOf(run.ResumeStep);
        for (var segment = 0; segment < run.Worlds.Length; segment++)
        {
            var sampler = new GlobalBatchSampler(run.Seed, run.Samples, run.Batch); // a restarted job
            var step = sampler.StepOf(resumeAt);
            var world = run.Worlds[segment];
            var part = new long[run.Batch / world];
            for (var s = step; s < step + run.Steps[segment]; s++)
                for (var rank = 0; rank < world; rank++)
                {
                    sampler.RankBatch(s, rank, world, part);
                    consumed.AddRange(part);
                }
            resumeAt = sampler.PositionOf(step + run.Steps[segment]);
        }
        return consumed;
    }

    private static int Lcm(int a, int b) => a / Gcd(a, b) * b;

    private static int Gcd(int a, int b) => b == 0 ? a : Gcd(b, a % b);
}
