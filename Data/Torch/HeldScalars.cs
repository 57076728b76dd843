using TorchSharp;

namespace Pretrain.Data.Torch;

/// <summary>
/// Scalars made once and never freed, for the alpha that TorchSharp 0.107's one-argument <c>add_</c> passes as
/// an implicit int→Scalar (<c>add_(x)</c> is <c>add_(x, 1)</c>): that temporary is unreachable once its handle is taken,
/// so a GC during the native call can finalize it first, and libtorch reads a freed Scalar ("Expected false to be true"
/// from Scalar::toFloat, seen in BYOL's contrast augmentation after 246 steps). Pass <see cref="One"/> as the alpha.
/// </summary>
public static class HeldScalars
{
    public static readonly Scalar One = 1.ToScalar();
}
