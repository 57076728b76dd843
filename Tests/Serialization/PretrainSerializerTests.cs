using System.Runtime.Serialization;
using System.Text.Json;
using Akka.Actor;
using Akka.Configuration;
using Akka.Serialization;
using Pretrain.Shared.Messages;
using Pretrain.Shared.Serialization;
using Xunit;

namespace Pretrain.Tests.Serialization;

public sealed class PretrainSerializerTests : IDisposable
{
    // NaN (a first_loss never measured) must round-trip too.
    private static readonly JsonSerializerOptions Literals = new() { NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals };

    private readonly ActorSystem _system =
        ActorSystem.Create("serialization", ConfigurationFactory.ParseString(PretrainSerializer.Hocon()));

    public void Dispose() => _system.Terminate().Wait(TimeSpan.FromSeconds(10));

    private Akka.Serialization.Serialization Serialization => _system.Serialization;

    [Fact]
    public void Every_registered_type_has_a_sample()
    {
        var sampled = SampleMessages.All().Select(m => m.GetType()).ToHashSet();
        Assert.Equal(MessageRegistry.Types.OrderBy(t => t.Name), sampled.OrderBy(t => t.Name));
    }

    [Fact]
    public void Every_registered_type_round_trips_through_the_bound_serializer()
    {
        foreach (var message in SampleMessages.All())
        {
            // Found through the HOCON binding to IPretrainMessage, as Akka remoting and the journal do.
            var serializer = Assert.IsType<PretrainSerializer>(Serialization.FindSerializerFor(message));
            var manifest = Akka.Serialization.Serialization.ManifestFor(serializer, message);
            var bytes = serializer.ToBinary(message);

            var back = Serialization.Deserialize(bytes, PretrainSerializer.SerializerId, manifest);

            Assert.IsType(message.GetType(), back);
            // Records holding lists compare by reference, so compare their JSON renderings.
            Assert.Equal(JsonSerializer.Serialize(message, message.GetType(), Literals), JsonSerializer.Serialize(back, back.GetType(), Literals));
        }
    }

    [Fact]
    public void Manifests_are_short_and_unique()
    {
        var manifests = SampleMessages.All().Select(m => Akka.Serialization.Serialization.ManifestFor(Serializer(), m)).ToList();
        Assert.Equal(manifests.Count, manifests.Distinct().Count());
        Assert.All(manifests, m => Assert.InRange(m.Length, 1, 8));
    }

    [Fact]
    public void Unknown_manifest_fails_with_a_clear_serialization_error()
    {
        var error = Assert.Throws<SerializationException>(() => Serializer().FromBinary([0x90], "no-such-type"));
        Assert.Contains("no-such-type", error.Message);
        Assert.Contains("same version", error.Message);
    }

    [Fact]
    public void Malformed_bytes_fail_with_a_serialization_error()
    {
        Assert.Throws<SerializationException>(() => Serializer().FromBinary([0xc1, 0xff, 0x00], "rw"));
    }

    [Fact]
    public void An_unregistered_message_type_is_refused_when_written()
    {
        var error = Assert.Throws<SerializationException>(() => Serializer().Manifest(new Unregistered()));
        Assert.Contains(nameof(MessageRegistry), error.Message);
    }

    [Fact]
    public void Types_outside_the_marker_interface_are_not_bound_to_it()
    {
        Assert.IsNotType<PretrainSerializer>(Serialization.FindSerializerFor("a plain string"));
    }

    private SerializerWithStringManifest Serializer() =>
        (SerializerWithStringManifest)Serialization.FindSerializerForType(typeof(IPretrainMessage));

    private sealed record Unregistered : IPretrainMessage;
}
