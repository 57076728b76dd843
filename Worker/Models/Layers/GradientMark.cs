using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.autograd;

namespace Pretrain.Worker.Models.Layers;

/// <summary>
/// A point in a model's forward pass — the input of a block — that its <see cref="Parameters"/> are used after and
/// never before. When the backward pass reaches back to that point, every one of their gradients is complete, so
/// the training loop can start reducing them while backward goes on (DDP's overlap). TorchSharp 0.107 has no hooks
/// on tensors or on gradient accumulation, so the mark is an identity autograd function on the block's input, and
/// libtorch's autograd engine gives the guarantee:
/// <list type="bullet">
/// <item>Among the nodes ready to run, the engine runs the one made latest in the forward pass first (the highest
/// sequence number), so on one thread a node runs only after every node made after it (on the path to the loss)
/// has run: each of those became ready before it and outranked it.</item>
/// <item>The node that adds a gradient into a parameter's <c>.grad</c> (AccumulateGrad) outranks every other node
/// (its sequence number is the largest there is) and runs as soon as its last contribution has arrived.</item>
/// </list>
/// So when the mark's backward runs, each parameter used only after the mark has had its last contribution added
/// into <c>.grad</c>. The forward and the backward must run on one thread (sequence numbers count per thread), which
/// the loop's fast path does; a parameter that a mark covers must not be used before the mark (a tied embedding is
/// not covered, it is used at both ends). Only the first pass through a mark in a step is marked: a block run twice
/// (two views in two forwards) is complete only when backward is back at its first use.
/// <para>
/// The mark costs nothing until the loop arms it for the last micro-step of a step (<see cref="Listener"/>): otherwise
/// <see cref="Pass"/> returns its input as it is, no node is made, and evaluation, probes and tests see plain models.
/// The marked tensor is a view of the input made by a custom function, so it must not be modified in place.
/// </para>
/// </summary>
public sealed class GradientMark
{
    /// <param name="parameters">The parameters used after this mark and never before it: a block's own.</param>
    public GradientMark(IEnumerable<Parameter> parameters) => Parameters = [.. parameters];

    /// <summary>The parameters whose gradients are complete once backward has reached this mark.</summary>
    public IReadOnlyList<Parameter> Parameters { get; }

    /// <summary>Who decides whether a forward pass places the mark and hears when backward reaches it (the gradient buckets); null: never placed.</summary>
    public IGradientMarkListener? Listener { get; set; }

    /// <summary>
    /// <paramref name="x"/>, marked when the listener wants the mark in this forward pass (a view of it whose backward
    /// tells the listener), else <paramref name="x"/> itself.
    /// </summary>
    public Tensor Pass(Tensor x)
    {
        if (Listener is not { } listener || !x.requires_grad || !is_grad_enabled()) return x;
        return listener.Place(this) is { } ticket ? MarkFunction.apply(x, this, ticket) : x;
    }

    /// <summary>The identity, whose backward tells the mark's listener that backward is back at the mark.</summary>
    private sealed class MarkFunction : SingleTensorFunction<MarkFunction>
    {
        public override string Name => "GradientMark";

        public override Tensor forward(AutogradContext ctx, params object[] vars)
        {
            // An undefined gradient passes as undefined: TorchSharp's zero-filling would use a cached tensor the
            // forward's dispose scope has freed by then.
            ctx.set_materialize_grads(false);
            ctx.save_data("mark", vars[1]);
            ctx.save_data("ticket", vars[2]);
            return (Tensor)vars[0];   // an input returned as it is: libtorch makes it a view with this node as its history
        }

        public override List<Tensor> backward(AutogradContext ctx, Tensor gradient)
        {
            // Runs inside libtorch's engine: a managed exception cannot unwind through its frames, and the listener
            // records its own failures for the loop to throw.
            var mark = (GradientMark)ctx.get_data("mark");
            try { mark.Listener?.Reached(mark, (long)ctx.get_data("ticket")); }
            catch (Exception) { }
            return [gradient, null!, null!];   // the gradient passes unchanged; the mark and the ticket are not tensors
        }
    }
}

/// <summary>What arms <see cref="GradientMark"/>s and acts when backward reaches them: the training loop's gradient buckets.</summary>
public interface IGradientMarkListener
{
    /// <summary>
    /// Called in the forward pass: a ticket to place <paramref name="mark"/> now, which its backward brings back to
    /// <see cref="Reached"/>, or null to leave the tensor unmarked (not armed, or already marked in this step).
    /// </summary>
    long? Place(GradientMark mark);

    /// <summary>
    /// Backward has reached <paramref name="mark"/>, placed with <paramref name="ticket"/>: its parameters' gradients are
    /// complete. Called on the thread that runs backward, inside libtorch's engine: must not throw.
    /// </summary>
    void Reached(GradientMark mark, long ticket);
}
