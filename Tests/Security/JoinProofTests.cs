using System.Text;
using Pretrain.Coordinator.Security;
using Pretrain.Shared.Messages;
using Pretrain.Shared.Security;
using Xunit;

namespace Pretrain.Tests.Security;

/// <summary>The pure parts of the registration handshake: the secret file, the proofs, the nonce book, the admission guard.</summary>
public sealed class JoinProofTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("pretrain-secret-test-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    static RegisterWorker Registration => new("w0", "10.0.0.7", 29500, 9401, 4242, "inc-1", 3, 120);

    [Fact]
    public void A_made_secret_is_private_to_its_owner_kept_on_a_second_call_and_never_printed()
    {
        var path = Path.Combine(_dir, "run", "secret");
        var made = JobSecret.CreateOrLoad(path);
        var text = File.ReadAllText(path);

        if (!OperatingSystem.IsWindows()) Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
        Assert.True(text.Length >= JobSecret.MinimumBytes);
        Assert.Equal(made.Mac("x"), JobSecret.CreateOrLoad(path).Mac("x"));          // a resumed run keeps its secret
        Assert.DoesNotContain(text, made.ToString());
    }

    [Theory]
    [InlineData(null, "does not exist")]
    [InlineData("short\n", "holds 5 bytes; a job secret needs at least 16")]
    public void A_missing_or_short_secret_file_is_refused_naming_it(string? content, string expected)
    {
        var path = Path.Combine(_dir, "bad-secret");
        if (content != null) File.WriteAllText(path, content);
        var error = Assert.Throws<SecretException>(() => JobSecret.Load(path));
        Assert.Contains(path, error.Message);
        Assert.Contains(expected, error.Message);
    }

    [Fact]
    public void A_trailing_newline_is_not_part_of_the_secret()
    {
        File.WriteAllText(Path.Combine(_dir, "a"), "0123456789abcdef0123\n");
        File.WriteAllText(Path.Combine(_dir, "b"), "0123456789abcdef0123");
        Assert.Equal(JobSecret.Load(Path.Combine(_dir, "a")).Mac("x"), JobSecret.Load(Path.Combine(_dir, "b")).Mac("x"));
    }

    [Fact]
    public void A_registration_proof_binds_every_field_the_nonce_and_the_secret()
    {
        var secret = JobSecret.FromBytes(Encoding.ASCII.GetBytes("the job secret, 32 bytes long!!!"), "test");
        var challenge = new JoinChallenge("w0", JoinProof.NewNonce(), []);
        var signed = JoinProof.Sign(secret, Registration, challenge);
        Assert.True(JoinProof.Verify(secret, signed));

        Assert.False(JoinProof.Verify(JobSecret.Random(), signed));
        Assert.False(JoinProof.Verify(secret, signed with { Nonce = JoinProof.NewNonce() }));
        foreach (var edited in new[]
                 {
                     signed with { WorkerId = "w1" }, signed with { Host = "10.0.0.8" }, signed with { DataPlanePort = 29501 },
                     signed with { MetricsPort = 1 }, signed with { ProcessId = 1 }, signed with { Incarnation = "inc-2" },
                     signed with { Generation = 4 }, signed with { HeldStep = 121 },
                 })
            Assert.False(JoinProof.Verify(secret, edited), $"{edited} verified");
        Assert.False(JoinProof.Verify(secret, signed with { Proof = null }));
        // The coordinator's proof over the same nonces is another value: neither side's proof passes for the other's.
        Assert.NotEqual(signed.Proof, JoinProof.Coordinator(secret, "w0", challenge.CoordinatorNonce, challenge.CoordinatorNonce));
    }

    [Fact]
    public void A_nonce_is_redeemed_once_by_the_worker_it_was_issued_to_before_it_expires()
    {
        var book = new ChallengeBook(capacity: 4, lifetimeMs: 1000);
        var nonce = book.Issue("w0", nowMs: 0);

        Assert.Contains("issued to w0", book.Redeem(nonce, "w1", 10));
        Assert.Null(book.Redeem(book.Issue("w0", 0), "w0", 10));
        var late = book.Issue("w0", 0);
        Assert.Contains("expired", book.Redeem(late, "w0", 1001));
        var once = book.Issue("w0", 0);
        Assert.Null(book.Redeem(once, "w0", 1));
        Assert.Contains("used already", book.Redeem(once, "w0", 2));
        Assert.Contains("no challenge nonce", book.Redeem(null, "w0", 2));
    }

    [Fact]
    public void A_flood_of_challenge_requests_keeps_the_book_bounded_and_forgets_the_oldest()
    {
        var book = new ChallengeBook(capacity: 16);
        var first = book.Issue("w0", 0);
        for (var i = 0; i < 10_000; i++) book.Issue($"stranger-{i}", 0);
        Assert.True(book.Outstanding <= 16);
        Assert.NotNull(book.Redeem(first, "w0", 1));
    }

    [Fact]
    public void A_member_that_proves_nothing_is_due_after_the_grace_period_once()
    {
        var guard = new AdmissionGuard(TimeSpan.FromSeconds(10));
        guard.Up("akka.tcp://pretrain@a:1", 0);
        guard.Up("akka.tcp://pretrain@b:1", 0);
        guard.Proven("akka.tcp://pretrain@b:1");

        Assert.Empty(guard.Overdue(9_999));
        Assert.Equal(["akka.tcp://pretrain@a:1"], guard.Overdue(10_000));
        Assert.Empty(guard.Overdue(20_000));
        guard.Up("akka.tcp://pretrain@b:1", 30_000);                 // proven before it came up: never due
        Assert.Empty(guard.Overdue(60_000));
    }
}
