using Pretrain.Worker.Collectives;
using Pretrain.Worker.Models.Layers;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Pretrain.Worker.Training;

/// <summary>
/// Where gradients cross the network. The parameters' gradients live in a few flat float32 tensors (buckets):
/// every parameter's <c>.grad</c> is a view into its bucket (DDP's gradient_as_bucket_view), so backward adds
/// into the buckets in place and nothing is copied in or out. The ring sees a few large messages instead of one
/// per parameter; each bucket is allreduced in place through <see cref="ICommunicator.AllReduceSum"/> on its
/// native memory, and — in the last micro-step of a step — as soon as backward has completed all its gradients,
/// while backward goes on (<see cref="GradientMark"/>, <c>GradientBuckets.Overlap.cs</c>). Methods normalise
/// their losses by the global sample count, so the reduction is a plain <b>sum</b> and holds no world size: the
/// buckets outlive every generation, which lends its communicator for one step at a time.
/// <para>
/// Three extra floats at the end of the last bucket carry the step's loss and the ranks' votes to stop at this
/// step boundary (a newcomer waits) and to leave (SIGTERM), so agreeing on where a generation ends costs no extra
/// collective (torchft's should_commit rides along the same way). The last bucket holds the first layers, which
/// backward completes last, and is always the last one started. Buckets and views are made once; a step
/// allocates nothing but the collectives' handles. With gradient accumulation the micro-steps add up in the
/// buckets and cross the network once, after the last (DDP's <c>no_sync</c>). A world of one keeps the loss and
/// votes locally and starts no collective.
/// </para>
/// </summary>
public sealed partial class GradientBuckets : IDisposable
{
    public const long FirstBucketBytes = 1L << 20; // DDP: the first bucket is small so the ring starts early
    public const long BucketBytes = 25L << 20;     // DDP's default; 1 MiB buckets cost 2.6–16% at 8–16 ranks
    private const int Extras = 3;                  // loss, stop votes, leave votes

    /// <param name="Flat">The bucket: its parameters' gradients end to end, then the extras in the last bucket.</param>
    /// <param name="Gradients">The gradient part of <paramref name="Flat"/>, without the extras.</param>
    /// <param name="Memory">Over <paramref name="Flat"/>: the extras are written and read through it.</param>
    /// <param name="Views">Each parameter's gradient: <paramref name="Flat"/> narrowed and shaped as the parameter.</param>
    private sealed record Bucket(Tensor Flat, Tensor Gradients, NativeMemory<float> Memory, Parameter[] Parameters, Tensor[] Views);

    private readonly Bucket[] _buckets;
    private readonly Tensor[] _gradients;     // each bucket's Gradients, for clipping
    private readonly GradientMark[] _marks;

    /// <param name="parameters">In a fixed order, the same on every rank. Gradients they already hold are copied into the buckets.</param>
    /// <param name="marks">Where backward completes groups of them, in forward order (the method's <c>GradientMarks</c>); the buckets listen to them.</param>
    /// <param name="firstBucketBytes">Cap of the first bucket (tests make several small buckets).</param>
    /// <param name="bucketBytes">Cap of the others.</param>
    public GradientBuckets(IReadOnlyList<Parameter> parameters, IReadOnlyList<GradientMark>? marks = null,
        long firstBucketBytes = FirstBucketBytes, long bucketBytes = BucketBytes)
    {
        _marks = [.. marks ?? []];
        var plan = BucketPlan.Of(parameters, _marks, firstBucketBytes, bucketBytes);
        var last = plan.Buckets.Count - 1;
        _buckets = [.. plan.Buckets.Select((members, b) => Make([.. members.Select(i => parameters[i])], extras: b == last ? Extras : 0))];
        _gradients = [.. _buckets.Select(b => b.Gradients)];
        var bucketOf = new int[parameters.Count];
        for (var b = 0; b < plan.Buckets.Count; b++)
            foreach (var i in plan.Buckets[b])
                bucketOf[i] = b;
        _markedBuckets = [.. plan.Marked.Select(covered => covered.Select(i => bucketOf[i]).ToArray())];
        (_placed, _reached) = (new bool[_marks.Length], new bool[_marks.Length]);
        (_remaining, _reductions) = (new int[_buckets.Length], new Task[_buckets.Length]);
        (_startedAt, _endedAt) = (new long[_buckets.Length], new long[_buckets.Length]);
        Array.Fill(_reductions, Task.CompletedTask);

        using (no_grad())
            foreach (var bucket in _buckets)
                for (var i = 0; i < bucket.Parameters.Length; i++)
                {
                    using (var existing = bucket.Parameters[i].grad)
                        if (existing is not null) bucket.Views[i].copy_(existing);
                    bucket.Parameters[i].grad = bucket.Views[i];
                }
        for (var m = 0; m < _marks.Length; m++)
            _marks[m].Listener = this;
    }

    /// <summary>Buckets, in the order they are reduced.</summary>
    public int Count => _buckets.Length;

    /// <summary>Each bucket's gradients, without the extras (clipping; tests): one flat float32 tensor per bucket.</summary>
    public IReadOnlyList<Tensor> Gradients => _gradients;

    /// <summary>Each bucket's parameters in their order in it (tests).</summary>
    internal IReadOnlyList<IReadOnlyList<Parameter>> Members => [.. _buckets.Select(b => (IReadOnlyList<Parameter>)b.Parameters)];

    /// <summary>
    /// Makes every parameter's <c>.grad</c> its view again, in case something replaced it (a grad set to null, a
    /// module's zero_grad): the loop calls it at each generation's start. Gradients are zero between steps, and so are
    /// the views.
    /// </summary>
    public void BindGradients()
    {
        foreach (var bucket in _buckets)
            for (var i = 0; i < bucket.Parameters.Length; i++)
                bucket.Parameters[i].grad = bucket.Views[i];
    }

    /// <summary>Zeroes every gradient in place, one <c>zero_</c> per bucket: the next backward adds into the same memory.</summary>
    public void Zero()
    {
        using var noGrad = no_grad();
        foreach (var bucket in _buckets)
            bucket.Flat.zero_();
    }

    /// <param name="extras">Floats after the gradients: the loss and the votes, in the last bucket.</param>
    private static Bucket Make(Parameter[] parameters, int extras)
    {
        var elements = parameters.Sum(p => p.numel());
        var flat = zeros(elements + extras, dtype: ScalarType.Float32).DetachFromDisposeScope();
        var gradients = flat.narrow(0, 0, elements).DetachFromDisposeScope();
        long offset = 0;
        var views = new Tensor[parameters.Length];
        for (var i = 0; i < parameters.Length; i++)
        {
            var p = parameters[i];
            if (p.dtype != ScalarType.Float32)
                throw new NotSupportedException($"gradient buckets hold float32; a parameter of shape ({string.Join('x', p.shape)}) is {p.dtype}");
            views[i] = flat.narrow(0, offset, p.numel()).view(p.shape).DetachFromDisposeScope();
            offset += p.numel();
        }
        return new Bucket(flat, gradients, new NativeMemory<float>(flat), parameters, views);
    }

    public void Dispose()
    {
        foreach (var mark in _marks)
            if (ReferenceEquals(mark.Listener, this)) mark.Listener = null;
        foreach (var bucket in _buckets)
        {
            foreach (var view in bucket.Views)
                view.Dispose();
            bucket.Gradients.Dispose();
            bucket.Flat.Dispose();   // the parameters' .grad keep the memory alive as long as they point at it
        }
    }
}
