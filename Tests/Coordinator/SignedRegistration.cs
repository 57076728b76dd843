using Akka.Actor;
using Pretrain.Shared.Messages;
using Pretrain.Shared.Security;
using Xunit;

namespace Pretrain.Tests.Coordinator;

/// <summary>What a worker does to register, for tests that talk to a job actor from an inbox: ask for a challenge, check
/// the coordinator's proof, send the registration signed with <paramref name="secret"/>.</summary>
internal static class SignedRegistration
{
    public static async Task<RegisterWorker> SendAsync(ICanTell job, Inbox inbox, RegisterWorker registration, JobSecret secret,
        TimeSpan timeout, JobSecret? coordinatorSecret = null)
    {
        var nonce = JoinProof.NewNonce();
        job.Tell(new RequestJoinChallenge(registration.WorkerId, nonce), inbox.Receiver);
        var challenge = Assert.IsType<JoinChallenge>(await inbox.ReceiveAsync(timeout));
        Assert.Equal(JoinProof.Coordinator(coordinatorSecret ?? secret, registration.WorkerId, nonce, challenge.CoordinatorNonce), challenge.CoordinatorProof);
        var signed = JoinProof.Sign(secret, registration, challenge);
        job.Tell(signed, inbox.Receiver);
        return signed;
    }
}
