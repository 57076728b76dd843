using System.Runtime.Serialization;
using Akka.Actor;
using Akka.Serialization;
using MessagePack;

namespace Pretrain.Shared.Serialization;

/// <summary>
/// Akka serializer for every <see cref="Messages.IPretrainMessage"/>: MessagePack bodies keyed by the
/// short manifests of <see cref="MessageRegistry"/>. Bytes come from other processes and from the
/// journal, so MessagePack runs in untrusted-data mode (hash-collision resistant maps, depth limits).
/// </summary>
public sealed class PretrainSerializer(ExtendedActorSystem system) : SerializerWithStringManifest(system)
{
    // Akka reserves identifiers 0-40 for its own serializers; this one is ours and must stay fixed,
    // because the journal stores it next to every event.
    public const int SerializerId = 1701;

    private static readonly MessagePackSerializerOptions Options =
        MessagePackSerializerOptions.Standard.WithSecurity(MessagePackSecurity.UntrustedData);

    public override int Identifier => SerializerId;

    public override byte[] ToBinary(object obj) =>
        MessagePackSerializer.Serialize(obj.GetType(), obj, Options);

    public override object FromBinary(byte[] bytes, string manifest)
    {
        if (!MessageRegistry.TryGetType(manifest, out var type))
            throw new SerializationException(
                $"Unknown pretrain message manifest '{manifest}' ({bytes.Length} bytes): the sender or the journal " +
                "uses a message type this build does not know. Check that coordinator and workers run the same version.");
        try
        {
            return MessagePackSerializer.Deserialize(type, bytes, Options)
                ?? throw new SerializationException($"Pretrain message '{manifest}' ({type.Name}) deserialized to null.");
        }
        // MessagePack 2.5 wraps whatever a formatter throws in this one type (EndOfStreamException for a length past the
        // end, OverflowException for a list whose array32 header of 2^32-1 it reads as -1) and checks a length against
        // the bytes left before allocating; Tests/Fuzz/MessageFuzzTests holds it to that.
        catch (MessagePackSerializationException e)
        {
            throw new SerializationException($"Malformed pretrain message '{manifest}' ({type.Name}): {e.Message}", e);
        }
    }

    public override string Manifest(object o) =>
        MessageRegistry.TryGetManifest(o.GetType(), out var manifest)
            ? manifest
            : throw new SerializationException(
                $"{o.GetType().FullName} implements IPretrainMessage but is not listed in MessageRegistry.");

    /// <summary>
    /// The HOCON that binds this serializer to <see cref="Messages.IPretrainMessage"/> only (no
    /// catch-all binding). Coordinator and worker configs both include it, so they always agree.
    /// </summary>
    public static string Hocon() =>
        """
        akka.actor {
          serializers {
            pretrain = "Pretrain.Shared.Serialization.PretrainSerializer, Pretrain.Shared"
          }
          serialization-bindings {
            "Pretrain.Shared.Messages.IPretrainMessage, Pretrain.Shared" = pretrain
          }
          serialization-identifiers {
            "Pretrain.Shared.Serialization.PretrainSerializer, Pretrain.Shared" = 1701
          }
        }
        """;
}
