using Pretrain.Shared.Messages;
using Pretrain.Shared.Security;

namespace Pretrain.Worker.Host;

/// <summary>
/// A worker's side of the registration handshake (<see cref="JoinProof"/>), shared by training workers and preparing
/// ones: the challenge requests it sends (their nonces kept, so a late answer to the request of a second ago is not
/// taken for an impostor) and its check of the coordinator's proof. A worker without a secret asks for no challenge: it
/// registers unproven, and the coordinator's refusal says what is missing.
/// </summary>
internal sealed class JoinClient(JobSecret? secret, string workerId)
{
    // Four: requests go out once a second, answers take milliseconds.
    private readonly Queue<byte[]> _nonces = new();

    public JobSecret? Secret => secret;

    /// <summary>Set when a coordinator answered with a proof that does not match this worker's secret: never to be trusted.</summary>
    public string? UnprovenCoordinator { get; private set; }

    /// <summary>A fresh challenge request, or null when this worker has no secret (it then registers unproven).</summary>
    public RequestJoinChallenge? Request()
    {
        if (secret is null) return null;
        var nonce = JoinProof.NewNonce();
        _nonces.Enqueue(nonce);
        while (_nonces.Count > 4) _nonces.Dequeue();
        return new RequestJoinChallenge(workerId, nonce);
    }

    /// <summary>
    /// Checks the coordinator's proof in <paramref name="challenge"/> (from <paramref name="coordinator"/>, for messages).
    /// A mismatch is remembered in <see cref="UnprovenCoordinator"/>; the caller still answers, so the coordinator logs and
    /// counts a worker with a wrong secret, but never trusts what comes back.
    /// </summary>
    public void Check(JoinChallenge challenge, string coordinator)
    {
        if (secret is null) return;
        if (_nonces.Any(n => Hmac.Matches(challenge.CoordinatorProof ?? [], JoinProof.Coordinator(secret, workerId, n, challenge.CoordinatorNonce ?? []))))
            return;
        UnprovenCoordinator = $"the coordinator at {coordinator} answered with a proof that does not match this worker's job secret " +
                              $"({secret.Source}): the two were given different secrets, or it is not this job's coordinator";
    }

    /// <summary>What a refusal says to the operator: the coordinator's reason, with what this worker lacks or saw.</summary>
    public string Explain(string reason) =>
        reason + (secret is null ? " — this worker has no job secret: pass --secret-file FILE or set PRETRAIN_SECRET_FILE" : "")
               + (UnprovenCoordinator is { } impostor ? "; and " + impostor : "");
}
