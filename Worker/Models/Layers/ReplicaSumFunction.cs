using static TorchSharp.torch;
using static TorchSharp.torch.autograd;

namespace Pretrain.Worker.Models.Layers;

/// <summary>
/// y = Σ over replicas of x, differentiable: every replica's y is the same value, so the gradient of the
/// sum of all replicas' losses with respect to one replica's x is the sum over replicas of their dL/dy —
/// the backward is the same all-reduce. Tensors in and out are contiguous float32 on the CPU.
/// <para>
/// Backward runs as a callback from libtorch's autograd engine (on the thread that called backward, for
/// CPU tensors); a managed exception cannot unwind through those native frames, so a failed collective
/// there is recorded on the <see cref="IReplicaSum"/> and the gradient passes through unsummed — the
/// caller checks <see cref="IReplicaSum.ThrowIfFailed"/> right after backward.
/// </para>
/// </summary>
public sealed class ReplicaSumFunction : SingleTensorFunction<ReplicaSumFunction>
{
    public override string Name => "ReplicaSum";

    /// <summary>Σ over replicas of <paramref name="local"/>, with the backward above.</summary>
    public static Tensor Sum(Tensor local, IReplicaSum replicas) => apply(local, replicas);

    public override Tensor forward(AutogradContext ctx, params object[] vars)
    {
        var (local, replicas) = ((Tensor)vars[0], (IReplicaSum)vars[1]);
        ctx.save_data("replicas", replicas);
        var sum = local.detach().to(float32).contiguous().clone();
        replicas.SumInPlace(sum);
        return sum;
    }

    public override List<Tensor> backward(AutogradContext ctx, Tensor gradient)
    {
        var replicas = (IReplicaSum)ctx.get_data("replicas");
        var sum = gradient.contiguous().clone();
        try
        {
            replicas.SumInPlace(sum);
        }
        catch (Exception error)
        {
            replicas.Fail(error);
        }
        return [sum, null!];
    }
}
