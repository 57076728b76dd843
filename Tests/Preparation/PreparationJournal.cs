using MessagePack;
using Microsoft.Data.Sqlite;
using Pretrain.Shared.Messages;
using Pretrain.Shared.Serialization;
using Xunit;

namespace Pretrain.Tests.Preparation;

/// <summary>A preparation's events read back from a SQLite journal, straight from their MessagePack payloads.</summary>
public static class PreparationJournal
{
    public static List<IPreparationEvent> Read(string journalPath, string persistenceId)
    {
        SqliteConnection.ClearAllPools();
        using var connection = new SqliteConnection($"Data Source={journalPath};Mode=ReadOnly;Pooling=False");
        connection.Open();
        using var query = connection.CreateCommand();
        query.CommandText = "SELECT manifest, message FROM journal WHERE persistence_id = $id ORDER BY sequence_number";
        query.Parameters.AddWithValue("$id", persistenceId);
        using var reader = query.ExecuteReader();
        var options = MessagePackSerializerOptions.Standard.WithSecurity(MessagePackSecurity.UntrustedData);
        var events = new List<IPreparationEvent>();
        while (reader.Read())
        {
            Assert.True(MessageRegistry.TryGetType(reader.GetString(0), out var type), $"unknown manifest {reader.GetString(0)}");
            events.Add((IPreparationEvent)MessagePackSerializer.Deserialize(type, (byte[])reader[1], options)!);
        }
        return events;
    }

    /// <summary>Task ids with more than one completion and no invalidation between: must always be empty.</summary>
    public static List<string> CompletedTwice(IEnumerable<IPreparationEvent> events) =>
        [.. events.OfType<PreparationTaskCompleted>().GroupBy(c => c.TaskId).Where(g => g.Count() > 1).Select(g => g.Key)];
}
