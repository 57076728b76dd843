using Pretrain.Shared.Messages;
using Pretrain.Tests.Infrastructure;

namespace Pretrain.Tests.Preparation;

/// <summary>A preparation's events read back from a SQLite journal, straight from their MessagePack payloads.</summary>
public static class PreparationJournal
{
    public static List<IPreparationEvent> Read(string journalPath, string persistenceId) =>
        [.. SqliteJournal.Read(journalPath, persistenceId).Cast<IPreparationEvent>()];

    /// <summary>Task ids with more than one completion and no invalidation between: must always be empty.</summary>
    public static List<string> CompletedTwice(IEnumerable<IPreparationEvent> events) =>
        [.. events.OfType<PreparationTaskCompleted>().GroupBy(c => c.TaskId).Where(g => g.Count() > 1).Select(g => g.Key)];
}
