using MessagePack;
using Microsoft.Data.Sqlite;
using Pretrain.Shared.Messages;
using Pretrain.Shared.Serialization;

namespace Pretrain.Tests.Infrastructure;

/// <summary>Events read back from a coordinator's SQLite journal, straight from their MessagePack payloads by their manifests.</summary>
public static class SqliteJournal
{
    /// <summary>Every event of <paramref name="persistenceId"/> (all persistence ids when null), in journal order.</summary>
    public static List<IPretrainMessage> Read(string journalPath, string? persistenceId = null)
    {
        SqliteConnection.ClearAllPools();
        using var connection = new SqliteConnection($"Data Source={journalPath};Mode=ReadOnly;Pooling=False");
        connection.Open();
        using var query = connection.CreateCommand();
        query.CommandText = persistenceId is null
            ? "SELECT manifest, message FROM journal ORDER BY persistence_id, sequence_number"
            : "SELECT manifest, message FROM journal WHERE persistence_id = $id ORDER BY sequence_number";
        if (persistenceId is not null) query.Parameters.AddWithValue("$id", persistenceId);
        using var reader = query.ExecuteReader();
        var options = MessagePackSerializerOptions.Standard.WithSecurity(MessagePackSecurity.UntrustedData);
        var events = new List<IPretrainMessage>();
        while (reader.Read())
        {
            if (!MessageRegistry.TryGetType(reader.GetString(0), out var type))
                throw new InvalidDataException($"{journalPath}: unknown manifest {reader.GetString(0)}");
            events.Add((IPretrainMessage)MessagePackSerializer.Deserialize(type, (byte[])reader[1], options)!);
        }
        return events;
    }
}
