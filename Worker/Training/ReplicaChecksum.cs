using System.Globalization;
using System.IO.Hashing;
using static TorchSharp.torch;

namespace Pretrain.Worker.Training;

/// <summary>
/// xxHash64 over every parameter's raw bytes, parameters in ordinal name order, as 16 hex digits. Equal
/// checksums on all ranks prove the replicas are identical (brief, principle 5); equal checksums across
/// runs prove determinism.
/// </summary>
public static class ReplicaChecksum
{
    public static string Of(IEnumerable<(string Name, Tensor Tensor)> parameters)
    {
        var hash = new XxHash64();
        foreach (var (_, tensor) in parameters.OrderBy(p => p.Name, StringComparer.Ordinal))
            hash.Append(tensor.bytes);
        return hash.GetCurrentHashAsUInt64().ToString("x16", CultureInfo.InvariantCulture);
    }
}
