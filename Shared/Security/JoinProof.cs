using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Pretrain.Shared.Messages;

namespace Pretrain.Shared.Security;

/// <summary>
/// The registration handshake's proofs (issue 14): a challenge-response in both directions over the job secret.
/// <list type="number">
/// <item>The worker sends <see cref="RequestJoinChallenge"/> with a fresh nonce.</item>
/// <item>The coordinator answers <see cref="JoinChallenge"/>: a fresh single-use nonce of its own, and
/// <see cref="Coordinator"/> over both nonces — the worker checks it, so it never registers with an impostor.</item>
/// <item>The worker sends <see cref="RegisterWorker"/> with <see cref="Worker"/>: the HMAC of every field it states
/// (id, addresses, pid, incarnation, what it holds) and the coordinator's nonce. A captured registration cannot be
/// replayed (the nonce is redeemed once), nor edited (the fields are bound), nor made without the secret.</item>
/// </list>
/// Labels differ per direction, so one side's proof is never valid as the other's.
/// </summary>
public static class JoinProof
{
    /// <summary>256-bit nonces: never repeated by chance in a job's life.</summary>
    public const int NonceBytes = 32;

    public static byte[] NewNonce() => RandomNumberGenerator.GetBytes(NonceBytes);

    /// <summary>The coordinator's proof, answering <paramref name="workerNonce"/>.</summary>
    public static byte[] Coordinator(JobSecret secret, string workerId, byte[] workerNonce, byte[] coordinatorNonce) =>
        secret.Mac("pretrain/join/coordinator/v1", Utf8(workerId), workerNonce, coordinatorNonce);

    /// <summary>The worker's proof of <paramref name="registration"/> (its nonce and proof fields aside) for <paramref name="coordinatorNonce"/>.</summary>
    public static byte[] Worker(JobSecret secret, RegisterWorker registration, byte[] coordinatorNonce) =>
        secret.Mac("pretrain/join/worker/v1",
            Utf8(registration.WorkerId), Utf8(registration.Host), Number(registration.DataPlanePort), Number(registration.MetricsPort),
            Number(registration.ProcessId), Utf8(registration.Incarnation), Number(registration.Generation), Number(registration.HeldStep),
            coordinatorNonce);

    /// <summary>A preparing worker's proof of <paramref name="registration"/> (`pretrain prepare`) for <paramref name="coordinatorNonce"/>.</summary>
    public static byte[] Preparer(JobSecret secret, RegisterPreparer registration, byte[] coordinatorNonce) =>
        secret.Mac("pretrain/join/preparer/v1", Utf8(registration.WorkerId), Number(registration.ProcessId), coordinatorNonce);

    public static RegisterPreparer Sign(JobSecret secret, RegisterPreparer registration, JoinChallenge challenge) =>
        registration with { Nonce = challenge.CoordinatorNonce, Proof = Preparer(secret, registration, challenge.CoordinatorNonce) };

    public static bool Verify(JobSecret secret, RegisterPreparer registration) =>
        registration is { Nonce.Length: NonceBytes, Proof: { } proof } && Hmac.Matches(proof, Preparer(secret, registration, registration.Nonce));

    /// <summary><paramref name="registration"/> with its proof for <paramref name="challenge"/>.</summary>
    public static RegisterWorker Sign(JobSecret secret, RegisterWorker registration, JoinChallenge challenge) =>
        registration with { Nonce = challenge.CoordinatorNonce, Proof = Worker(secret, registration, challenge.CoordinatorNonce) };

    /// <summary>Whether <paramref name="registration"/>'s proof holds for its nonce (the nonce's freshness is the caller's: <c>ChallengeBook</c>).</summary>
    public static bool Verify(JobSecret secret, RegisterWorker registration) =>
        registration is { Nonce.Length: NonceBytes, Proof: { } proof } && Hmac.Matches(proof, Worker(secret, registration, registration.Nonce));

    private static byte[] Utf8(string? text) => Encoding.UTF8.GetBytes(text ?? "");

    private static byte[] Number(long value) => Encoding.ASCII.GetBytes(value.ToString(CultureInfo.InvariantCulture));
}
