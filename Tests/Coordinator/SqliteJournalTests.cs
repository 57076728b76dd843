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
}
