namespace Pretrain.Shared.Messages;

/// <summary>
/// Marker for every control-plane message and journal event. Our Akka serializer is bound to this
/// interface only (no catch-all binding), and every implementing type is listed in
/// <see cref="MessageRegistry"/> with a stable manifest code.
/// </summary>
public interface IPretrainMessage;
