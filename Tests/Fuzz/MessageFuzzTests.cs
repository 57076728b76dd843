using System.Runtime.Serialization;
using Akka.Actor;
using Akka.Configuration;
using Pretrain.Coordinator.State;
using Pretrain.Shared.Messages;
using Pretrain.Shared.Serialization;
using Pretrain.Tests.Serialization;
using Xunit;
using static Pretrain.Tests.Fuzz.Mutations;

namespace Pretrain.Tests.Fuzz;

/// <summary>
/// Mutated and random bytes for <see cref="PretrainSerializer.FromBinary"/> (issue 14, item 5): what other processes
/// and the journal hand the coordinator and the workers. Every registered message type is serialized once (the shared
/// samples, and a snapshot late in a job whose collections all hold something); mutations of a random one are decoded
/// under its manifest. Each decode either yields the manifest's type or fails with a
/// <see cref="SerializationException"/> naming the manifest — no other exception, no hang, no huge allocation.
/// </summary>
/// <remarks>
/// MessagePack refuses a length that exceeds the bytes left, and wraps every exception a formatter throws in its own
/// (which <see cref="PretrainSerializer"/> wraps in turn). An array header claiming 2^32-1 elements is read as a count
/// of -1: a list then fails (a negative array size), but a record decodes as if its array were empty, every member at
/// its default — null for a string, as for an array of fewer members than the record has (an older sender).
/// </remarks>
public sealed class MessageFuzzTests : IDisposable
{
    // MessagePack codes a mutation may insert: nil, false, true, bin8, ext8, float64, uint64, int64, fixext1, str8, str16,
    // str32, array16, array32, map16, map32, the never-used 0xC1, empty and 15-element fixmap, fixarray and fixstr, fixints.
    static readonly byte[] Codes =
        [0xC0, 0xC2, 0xC3, 0xC4, 0xC7, 0xCB, 0xCF, 0xD3, 0xD4, 0xD9, 0xDA, 0xDB, 0xDC, 0xDD, 0xDE, 0xDF, 0xC1,
         0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xAF, 0x00, 0x7F, 0xE0, 0xFF];

    // Lengths near 2^32 where a reader might allocate first and check later: array32, map32, str32, bin32, ext32.
    static readonly byte[][] HugeHeaders =
    [
        [0xDD, 0xFF, 0xFF, 0xFF, 0xFF], [0xDD, 0x7F, 0xFF, 0xFF, 0xFF], [0xDF, 0xFF, 0xFF, 0xFF, 0xFF],
        [0xDB, 0xFF, 0xFF, 0xFF, 0xFF], [0xDB, 0x7F, 0xFF, 0xFF, 0xFF], [0xC6, 0xFF, 0xFF, 0xFF, 0xFF],
        [0xC9, 0x7F, 0xFF, 0xFF, 0xFF, 0x01],
    ];

    // Manifests this build does not know: near misses of real ones, empty, a control character.
    static readonly string[] UnknownManifests = ["", "RW", "rw ", "e.", "e.zz", "s.job2", "zz", "\0"];

    readonly ActorSystem _system = ActorSystem.Create("message-fuzz", ConfigurationFactory.ParseString(PretrainSerializer.Hocon()));
    readonly PretrainSerializer _serializer;
    readonly (string Manifest, byte[] Bytes)[] _samples;

    public MessageFuzzTests()
    {
        // The serializer Akka binds to IPretrainMessage, as remoting and the journal find it.
        _serializer = Assert.IsType<PretrainSerializer>(_system.Serialization.FindSerializerForType(typeof(IPretrainMessage)));
        _samples = [.. SampleMessages.All().Append(LateSnapshot()).Select(m => (_serializer.Manifest(m), _serializer.ToBinary(m)))];
    }

    public void Dispose() => _system.Terminate().Wait(TimeSpan.FromSeconds(10));

    [Fact]
    public void Mutated_messages_decode_or_fail_naming_the_manifest()
    {
        Assert.Equal(MessageRegistry.Types.Count, _samples.Select(s => s.Manifest).Distinct().Count());
        foreach (var (manifest, bytes) in _samples)
            Decode(manifest, bytes);                                                  // every valid message decodes
        var refused = Run<(string Manifest, byte[] Bytes), SerializationException>(seed: 14_005, random =>
        {
            var (manifest, bytes) = _samples[random.Next(_samples.Length)];
            return (manifest, Mutate(bytes, random, Codes));
        }, input => Decode(input.Manifest, input.Bytes), Describe);
        AssertReachesTheChecks(refused);
    }

    [Fact]
    public void Garbage_huge_lengths_and_other_types_bytes_decode_or_fail_naming_the_manifest()
    {
        var refused = Run<(string Manifest, byte[] Bytes), SerializationException>(seed: 14_006, random =>
        {
            var manifest = random.Next(4) == 0 ? UnknownManifests[random.Next(UnknownManifests.Length)] : _samples[random.Next(_samples.Length)].Manifest;
            var noise = new byte[random.Next(64)];
            random.NextBytes(noise);
            var header = HugeHeaders[random.Next(HugeHeaders.Length)];
            byte[] bytes = random.Next(4) switch
            {
                0 => noise,
                1 => _samples[random.Next(_samples.Length)].Bytes,                          // a message of another type, mostly
                2 => [.. header, .. noise],                                                 // the message itself is huge
                _ => [0x93, 0x01, .. header, .. noise],                                     // its second member is huge
            };
            return (manifest, bytes);
        }, input => Decode(input.Manifest, input.Bytes), Describe);
        AssertReachesTheChecks(refused);
    }

    /// <summary>Decodes: the manifest's type, or a <see cref="SerializationException"/> that names the manifest.</summary>
    void Decode(string manifest, byte[] bytes)
    {
        object decoded;
        try
        {
            decoded = _serializer.FromBinary(bytes, manifest);
        }
        catch (SerializationException e) when (e.Message.Contains($"'{manifest}'", StringComparison.Ordinal))
        {
            throw;
        }
        catch (SerializationException e)
        {
            throw new InvalidOperationException($"the error does not name the manifest '{manifest}': {e.Message}", e);
        }
        Assert.True(MessageRegistry.TryGetType(manifest, out var type), $"bytes under the unknown manifest '{manifest}' decoded");
        Assert.IsType(type, decoded);
    }

    static string Describe((string Manifest, byte[] Bytes) input) =>
        $"manifest '{input.Manifest}', {input.Bytes.Length} bytes: {Convert.ToBase64String(input.Bytes)}";

    /// <summary>
    /// A snapshot late in a job: every collection of <see cref="JobSnapshot"/> holds something (the shared sample's is
    /// taken early, most of them empty), so mutations reach the dictionary and array formatters.
    /// </summary>
    static JobSnapshot LateSnapshot()
    {
        static RankAssignment Rank(int rank, string worker) => new(rank, worker, $"10.0.0.{rank + 1}", 29500);
        return JobSnapshots.ToSnapshot(JobState.Empty.ApplyAll(
        [
            new JobDefined(SampleMessages.Job),
            new WorkerJoined("w0", "10.0.0.1", 29500, 9100, 4242, "3f2a9c"),
            new WorkerJoined("w1", "10.0.0.2", 29500, 9100, 4243, "77e0b1"),
            new WorkerJoined("w2", "10.0.0.3", 29500, 9100, 4244, "a01d5e"),
            new GenerationStarted(3, [Rank(0, "w0"), Rank(1, "w1")]),
            new StepCommitted(3, 400, 1.75, 980, 1_764_000_000_000),
            new CheckpointRecorded("w0", 400, "checkpoints/step-00000400", "xxh64:89ab"),
            new RegroupStarted(3, RegroupCauses.Lost, "w1 lost at step 412 (connection reset)", 1_764_000_001_000),
            new StepHeld("w0", 3, 412),
            new WorkerLost("w1", 3, "connection reset", "w0"),
            new GenerationStarted(4, [Rank(0, "w0"), Rank(1, "w2"), Rank(2, "w3")], 412, 0, RegroupCauses.Lost),
            new StepCommitted(4, 420, 1.5, 1010, 1_764_000_009_500),                  // a recovery of 8.5 s
            new WorkerFinished(SampleMessages.Finished),
            new CoordinatorRestarted(4, 420, 1_764_000_010_000),
            new RegroupStarted(4, RegroupCauses.Lost, "w2 suspected at step 421", 1_764_000_012_000),
            new StepHeld("w0", 4, 421),
            new WorkerLeft("w3", 4, 421),                                             // gone, and left
            new WorkerSuspected("w2", 4, "no data for 5.1 s", "w0", 1_764_000_012_000),
        ]));
    }
}
