using Pretrain.Shared.Messages;
using Pretrain.Shared.Security;

namespace Pretrain.Coordinator.Security;

/// <summary>
/// The coordinator's side of the registration handshake (<see cref="JoinProof"/>), shared by the training job and
/// `pretrain prepare`: answers challenge requests with a fresh single-use nonce and this coordinator's proof, and checks
/// a registration's proof and nonce. What it refuses comes back as a short reason (the metric's label) and the words
/// the worker and the log get; the actor logs, counts and answers.
/// </summary>
public sealed class JoinGate(JobSecret secret)
{
    private readonly ChallengeBook _challenges = new();

    /// <summary>A refused request: the label of <c>pretrain_rejected_connections_total</c> and what the requester is told.</summary>
    public sealed record Refusal(string Reason, string Why);

    /// <summary>The challenge for <paramref name="request"/>, or why it is refused (a malformed nonce).</summary>
    public (JoinChallenge? Challenge, Refusal? Refused) Answer(RequestJoinChallenge request, long nowMs)
    {
        var workerId = request.WorkerId ?? "";
        if (request.WorkerNonce is not { Length: JoinProof.NonceBytes })
            return (null, new Refusal("malformed_challenge", $"its challenge request carries a {request.WorkerNonce?.Length ?? 0}-byte nonce, not {JoinProof.NonceBytes}"));
        var nonce = _challenges.Issue(workerId, nowMs);
        return (new JoinChallenge(workerId, nonce, JoinProof.Coordinator(secret, workerId, request.WorkerNonce, nonce)), null);
    }

    /// <summary>Null when a registration of <paramref name="workerId"/> whose proof is <paramref name="proven"/> (checked by the caller
    /// against its own message type) may go on: the proof holds and its nonce is fresh, now spent.</summary>
    public Refusal? Check(string? workerId, byte[]? nonce, byte[]? proof, bool proven, long nowMs)
    {
        if (string.IsNullOrEmpty(workerId)) return new Refusal("malformed", "its registration carries no worker id");
        if (!proven)
            return proof is null || nonce is null
                ? new Refusal("no_proof", "its registration carries no proof of the job secret (was the worker started without --secret-file or PRETRAIN_SECRET_FILE?)")
                : new Refusal("bad_proof", "its proof of the job secret does not verify: the worker and the coordinator were given different secrets (--secret-file)");
        return _challenges.Redeem(nonce, workerId, nowMs) is { } stale ? new Refusal("stale_nonce", stale) : null;
    }

    public JobSecret Secret => secret;

    // Registrations that proved the secret and were stashed until there is something to answer (a job not yet defined):
    // when they come out of the stash their nonce is spent, so they are recognised by reference instead of checked again.
    private readonly HashSet<object> _vouched = new(ReferenceEqualityComparer.Instance);

    /// <summary>Marks a proven registration that is about to be stashed.</summary>
    public void Vouch(object registration) => _vouched.Add(registration);

    /// <summary>True (once) for a registration vouched for before it was stashed.</summary>
    public bool Vouched(object registration) => _vouched.Remove(registration);
}
