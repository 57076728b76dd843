using Pretrain.Shared.Messages;

namespace Pretrain.Data.Preparation;

/// <summary>
/// <see cref="PrepareSpec"/> to and from <see cref="PreparationSpec"/>, the form the coordinator
/// journals and sends to workers (Shared's serializer cannot name Data's types).
/// </summary>
public static class PreparationSpecWire
{
    public static PreparationSpec ToWire(this PrepareSpec s) =>
        new(s.Kind, [.. s.Inputs], s.Output, s.Tokenizer, s.CompactVocabulary, s.JsonField, s.ValidationFraction, s.ShardBytes, s.Seed);

    public static PrepareSpec ToPrepareSpec(this PreparationSpec s) =>
        new(s.Kind, [.. s.Inputs], s.Output, s.Tokenizer, s.CompactVocabulary, s.JsonField, s.ValidationFraction, s.ShardBytes, s.Seed);
}
