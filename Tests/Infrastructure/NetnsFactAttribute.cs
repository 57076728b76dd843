using Xunit;

namespace Pretrain.Tests.Infrastructure;

/// <summary>A fact that is skipped only when network namespaces cannot be made here (see <see cref="NetnsCluster.Unavailable"/>).</summary>
public sealed class NetnsFactAttribute : FactAttribute
{
    public NetnsFactAttribute() => Skip = NetnsCluster.Unavailable();
}
