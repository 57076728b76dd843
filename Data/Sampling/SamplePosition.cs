namespace Pretrain.Data.Sampling;

/// <summary>
/// A point in the epoch-concatenated sample order: sample <see cref="SampleInEpoch"/> of epoch
/// <see cref="Epoch"/>. Together with the seed this is the whole data-loader state of a job, and it
/// converts to and from a step with <see cref="GlobalBatchSampler.PositionOf"/> and
/// <see cref="GlobalBatchSampler.StepOf"/>.
/// </summary>
public readonly record struct SamplePosition(long Epoch, long SampleInEpoch);
