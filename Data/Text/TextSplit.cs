using System.IO.Hashing;
using System.Text;

namespace Pretrain.Data.Text;

/// <summary>
/// The train/validation split by document, a pure function of (documents, fraction, seed): the
/// round(fraction × N) documents (at least 1 when the fraction is above 0, at most N − 1) with the
/// smallest xxHash64(seed, "file key\nordinal") go to validation. Keys are paths relative to their input,
/// so moving the corpus or adding a file elsewhere leaves every other document where it was.
/// </summary>
public static class TextSplit
{
    /// <summary>Document indices of each split, each in corpus order.</summary>
    public static (int[] Train, int[] Validation) Assign(TextCorpus corpus, double fraction, long seed)
    {
        if (fraction is < 0 or >= 1 || double.IsNaN(fraction))
            throw new InvalidDataException($"validation fraction {fraction}: expected a number in [0, 1)");
        var n = corpus.Documents.Count;
        var validationCount = fraction == 0 || n < 2 ? 0 : (int)Math.Clamp(Math.Round(fraction * n), 1, n - 1);
        var keys = new ulong[n];
        for (var d = 0; d < n; d++)
        {
            var document = corpus.Documents[d];
            var key = Encoding.UTF8.GetBytes($"{corpus.Files[document.File].Key}\n{document.Ordinal}");
            keys[d] = XxHash64.HashToUInt64(key, seed);
        }
        var validation = Enumerable.Range(0, n).OrderBy(d => keys[d]).ThenBy(d => d).Take(validationCount).Order().ToArray();
        var isValidation = new bool[n];
        foreach (var d in validation)
            isValidation[d] = true;
        return (Enumerable.Range(0, n).Where(d => !isValidation[d]).ToArray(), validation);
    }
}
