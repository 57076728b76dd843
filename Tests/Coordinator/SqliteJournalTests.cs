using Microsoft.Data.Sqlite;
using Pretrain.Coordinator;
using Xunit;

namespace Pretrain.Tests.Coordinator;

public sealed class SqliteJournalTests : IDisposable
{
    private readonly string _runDirectory = Directory.CreateTempSubdirectory("pretrain-sqlite-").FullName;

    public void Dispose()
    {
        SqliteConnection.ClearAllPools(); // pooled connections keep journal.db open
        Directory.Delete(_runDirectory, recursive: true);
    }

    [Fact]
    public async Task A_restarted_coordinator_recovers_the_same_job_state_from_journal_db()
    {
        await JournalRecoveryScenario.RunAsync(JournalOptions.InRunDirectory(_runDirectory), _runDirectory);
        Assert.True(File.Exists(Path.Combine(_runDirectory, JournalOptions.JournalFileName)));
    }

    [Fact]
    public async Task A_restarted_coordinator_recovers_from_a_snapshot_and_the_events_after_it_to_the_same_state()
    {
        // Snapshots every 4 events: recovery loads the newest (event 8) and replays the rest; the state must be the same.
        await JournalRecoveryScenario.RunAsync(JournalOptions.InRunDirectory(_runDirectory), _runDirectory, snapshotEvery: 4);
        SqliteConnection.ClearAllPools();
        using var connection = new SqliteConnection($"Data Source={Path.Combine(_runDirectory, JournalOptions.JournalFileName)};Mode=ReadOnly;Pooling=False");
        connection.Open();
        using var query = connection.CreateCommand();
        query.CommandText = "SELECT sequence_number FROM snapshot";
        var kept = new List<long>();
        using (var reader = query.ExecuteReader())
            while (reader.Read()) kept.Add(reader.GetInt64(0));
        // Only the newest snapshot is kept (older ones are deleted once a newer is saved); every event stays.
        // The job's 13 events (the second coordinator journals its restart) leave the one at event 12.
        Assert.Equal([12L], kept);
    }
}
