using Pretrain.Shared.Recipes;
using Pretrain.Tests.Methods;
using Pretrain.Worker.Methods;
using Pretrain.Worker.Methods.Vision;
using Pretrain.Worker.Training;
using Xunit;
using static TorchSharp.torch;

namespace Pretrain.Tests.Training;

/// <summary>The one-ahead input of a micro-batch: made off the caller's thread, never in place of a different batch.</summary>
public class PrefetcherTests
{
    sealed class Made(long step, long[] ids) : IDisposable
    {
        public long Step { get; } = step;
        public long[] Ids { get; } = ids;
        public int Thread { get; } = Environment.CurrentManagedThreadId;
        public bool Disposed { get; private set; }
        public void Dispose() => Disposed = true;
    }

    /// <summary>Records every input made, and fails if two are ever made at once (they share one buffer in the methods).</summary>
    sealed class Maker
    {
        private int _running;
        public readonly List<Made> All = [];
        public TimeSpan Delay = TimeSpan.Zero;
        public long FailAt = -1;
        public readonly SemaphoreSlim Started = new(0);

        public Made Make(long step, long[] ids)
        {
            if (Interlocked.Increment(ref _running) != 1) throw new InvalidOperationException("two inputs made at once");
            Started.Release();
            try
            {
                Thread.Sleep(Delay);
                if (step == FailAt) throw new IOException($"shard unreadable at step {step}");
                var made = new Made(step, ids);
                lock (All) All.Add(made);
                return made;
            }
            finally { Interlocked.Decrement(ref _running); }
        }
    }

    [Fact]
    public void The_announced_batch_is_made_on_another_thread_while_the_current_one_computes_and_taken_once()
    {
        var maker = new Maker { Delay = TimeSpan.FromMilliseconds(50) };
        using var prefetcher = new Prefetcher<Made>(maker.Make);

        prefetcher.Announce(1, [4, 5]);
        using var first = prefetcher.Take(0, [1, 2]);                  // nothing ahead yet: made here, then step 1 starts
        Assert.Equal(Environment.CurrentManagedThreadId, first.Thread);
        prefetcher.Announce(2, [7, 8]);
        // The step computes meanwhile; by the time it takes its next input, that is being made (a wait on a task not yet
        // started could run it inline, on this thread).
        Assert.True(maker.Started.Wait(TimeSpan.FromSeconds(10)) && maker.Started.Wait(TimeSpan.FromSeconds(10)), "step 1's input never started");
        using var second = prefetcher.Take(1, [4, 5]);
        Assert.Equal(1L, second.Step);
        Assert.Equal(new long[] { 4, 5 }, second.Ids);
        Assert.NotEqual(Environment.CurrentManagedThreadId, second.Thread);
        using var third = prefetcher.Take(2, [7, 8]);
        Assert.Equal(2L, third.Step);

        Assert.Equal(3, maker.All.Count);                               // each batch made once
    }

    [Fact]
    public void A_different_batch_than_the_one_ahead_is_made_there_and_then_and_the_one_ahead_is_disposed()
    {
        var maker = new Maker();
        using var prefetcher = new Prefetcher<Made>(maker.Make);
        prefetcher.Announce(1, [4, 5]);
        prefetcher.Take(0, [1, 2]).Dispose();

        // The world changed: step 1 on this rank is now other samples.
        using var taken = prefetcher.Take(1, [4, 5, 6]);
        Assert.Equal(new long[] { 4, 5, 6 }, taken.Ids);
        Assert.Equal(Environment.CurrentManagedThreadId, taken.Thread);
        var ahead = Assert.Single(maker.All, m => m.Ids.Length == 2 && m.Step == 1);
        Assert.True(ahead.Disposed);
    }

    [Fact]
    public void A_failure_making_the_batch_ahead_surfaces_when_that_batch_is_taken()
    {
        var maker = new Maker { FailAt = 1 };
        using var prefetcher = new Prefetcher<Made>(maker.Make);
        prefetcher.Announce(1, [4]);
        prefetcher.Take(0, [1]).Dispose();
        var error = Assert.Throws<IOException>(() => prefetcher.Take(1, [4]));
        Assert.Contains("step 1", error.Message);
    }

    [Fact]
    public void Disposing_it_disposes_the_batch_still_ahead()
    {
        var maker = new Maker { Delay = TimeSpan.FromMilliseconds(50) };
        var prefetcher = new Prefetcher<Made>(maker.Make);
        prefetcher.Announce(1, [4]);
        prefetcher.Take(0, [1]).Dispose();
        prefetcher.Dispose();                                           // waits for step 1's input, then disposes it
        Assert.All(maker.All, made => Assert.True(made.Disposed));
        Assert.Equal(2, maker.All.Count);
    }

    [Fact]
    public void Views_made_ahead_on_real_images_are_the_views_made_in_place_bit_for_bit()
    {
        var recipe = SmallFashionMnist.Recipe(4, method: "simclr");
        var folder = ((ImageData)recipe.Data).ImagesPath;
        using var images = new ImageBatch(folder, "train", 8);
        var augmenter = Augmentations.For(recipe.Augment!, images.Height, recipe.Seed);
        using var ahead = new ViewLoader(folder, 8, augmenter, views: 2, ahead: true);
        using var inPlace = new ViewLoader(folder, 8, augmenter, views: 2, ahead: false);
        long[][] ids = [[3, 1, 4, 1], [5, 9, 2, 6], [5, 3, 5, 8], [9, 7, 9, 3]];
        MicroBatch Batch(int step) => new(step, 0, 1, ids[step]);

        for (var step = 0; step < ids.Length; step++)
        {
            if (step + 1 < ids.Length)
            {
                ahead.Announce(Batch(step + 1));
                inPlace.Announce(Batch(step + 1));
            }
            using var madeAhead = ahead.Take(Batch(step));
            using var madeInPlace = inPlace.Take(Batch(step));
            Assert.Equal(new long[] { 8, images.Channels, madeInPlace.shape[2], madeInPlace.shape[3] }, madeAhead.shape);
            using var same = madeAhead.eq(madeInPlace).all();
            Assert.True(same.item<bool>(), $"step {step}: the views made ahead differ from those made in place");
        }
    }
}
