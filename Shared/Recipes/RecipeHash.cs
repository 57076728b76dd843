using System.Globalization;
using System.IO.Hashing;
using System.Text;

namespace Pretrain.Shared.Recipes;

/// <summary>
/// The recipe's identity: xxHash64 of its normalized text — one <c>field.path=value</c> line per field in
/// a fixed order, numbers in invariant round-trip form. Comments, key order, quoting and blank lines do
/// not change it; any value that changes the training does. The data path is hashed as written (not
/// resolved), so moving a run directory keeps the hash.
/// </summary>
public static class RecipeHash
{
    public static string Of(Recipe r) => Hex(Encoding.UTF8.GetBytes(Normalize(r)));

    public static string Normalize(Recipe r)
    {
        var o = r.Optimizer;
        var m = r.Model;
        var lines = new (string Key, object Value)[]
        {
            ("method", r.Method), ("seed", r.Seed), ("steps", r.Steps),
            ("data.text", r.Data.Text), ("data.validation_fraction", r.Data.ValidationFraction),
            ("model.layers", m.Layers), ("model.heads", m.Heads), ("model.width", m.Width),
            ("model.context", m.Context), ("model.dropout", m.Dropout),
            ("optimizer.name", o.Name), ("optimizer.lr", o.Lr), ("optimizer.min_lr", o.MinLr),
            ("optimizer.betas", string.Join(",", o.Betas.Select(Number))), ("optimizer.eps", o.Eps),
            ("optimizer.weight_decay", o.WeightDecay), ("optimizer.grad_clip", o.GradClip),
            ("schedule.warmup_steps", r.Schedule.WarmupSteps), ("batch.global", r.Batch.Global),
            ("checkpoint.every", r.Checkpoint.Every), ("checkpoint.keep", r.Checkpoint.Keep),
            ("eval.batches", r.Eval.Batches),
        };
        var text = new StringBuilder();
        foreach (var (key, value) in lines)
            text.Append(key).Append('=').Append(value is double d ? Number(d) : Convert.ToString(value, CultureInfo.InvariantCulture)).Append('\n');
        return text.ToString();
    }

    /// <summary>xxHash64 of <paramref name="bytes"/> as 16 lowercase hex digits (the project's checksum format).</summary>
    public static string Hex(ReadOnlySpan<byte> bytes) => XxHash64.HashToUInt64(bytes).ToString("x16", CultureInfo.InvariantCulture);

    private static string Number(double d) => d.ToString("R", CultureInfo.InvariantCulture);
}
