using Pretrain.Worker.Models.Layers;
using TorchSharp.Modules;

namespace Pretrain.Worker.Training;

/// <summary>
/// Which parameters share a gradient bucket, and in what order the buckets are reduced: the order backward
/// completes them in, as DDP buckets parameters in reverse order. Backward reaches the marks
/// (<see cref="GradientMark"/>) last to first, so the parameters of the last mark come first; parameters no mark
/// covers (embeddings, a stem, final norms) come last, since they are reduced only after backward. Consecutive
/// parameters fill a bucket up to its cap: 1 MiB for the first, so the ring starts early, then 25 MiB. A pure
/// function of the parameter list and the marks, which every rank holds alike, so every rank makes the same plan.
/// </summary>
public sealed class BucketPlan
{
    private BucketPlan(int[][] buckets, int[][] marked) => (Buckets, Marked) = (buckets, marked);

    /// <summary>Each bucket's parameters (indices into the parameter list), in reduction order; within a bucket, in the order they are laid out.</summary>
    public IReadOnlyList<int[]> Buckets { get; }

    /// <summary>For each mark, in the order given, the indices of the parameters it covers.</summary>
    public IReadOnlyList<int[]> Marked { get; }

    /// <param name="parameters">In a fixed order, the same on every rank (the method's: by ordinal name).</param>
    /// <param name="marks">In forward order; each parameter in one mark at most, and each one of <paramref name="parameters"/>.</param>
    public static BucketPlan Of(IReadOnlyList<Parameter> parameters, IReadOnlyList<GradientMark> marks,
        long firstBucketBytes = GradientBuckets.FirstBucketBytes, long bucketBytes = GradientBuckets.BucketBytes)
    {
        var index = new Dictionary<Parameter, int>(ReferenceEqualityComparer.Instance);
        for (var i = 0; i < parameters.Count; i++) index.Add(parameters[i], i);

        var covered = new bool[parameters.Count];
        var marked = new int[marks.Count][];
        for (var m = 0; m < marks.Count; m++)
        {
            marked[m] = marks[m].Parameters.Select(p => index.TryGetValue(p, out var i)
                ? i
                : throw new ArgumentException($"gradient mark {m} covers a parameter ({string.Join('x', p.shape)}) that is not one of the {parameters.Count} trained", nameof(marks))).ToArray();
            foreach (var i in marked[m])
            {
                if (covered[i]) throw new ArgumentException($"parameter {i} is covered by two gradient marks; it must be complete at one", nameof(marks));
                covered[i] = true;
            }
        }

        // Last mark first, each mark's parameters from the end of the list; then the uncovered ones, also from the end.
        var order = Enumerable.Range(0, marked.Length).Select(m => marked[^(m + 1)]).SelectMany(m => m.OrderDescending())
            .Concat(Enumerable.Range(0, parameters.Count).Select(i => parameters.Count - 1 - i).Where(i => !covered[i]));
        var buckets = new List<List<int>> { new() };
        long bytes = 0;
        foreach (var i in order)
        {
            var size = parameters[i].numel() * sizeof(float);
            var cap = buckets.Count == 1 ? firstBucketBytes : bucketBytes;
            if (bytes > 0 && bytes + size > cap)
            {
                buckets.Add([]);
                bytes = 0;
            }
            buckets[^1].Add(i);
            bytes += size;
        }
        return new BucketPlan([.. buckets.Select(b => b.ToArray())], marked);
    }
}
