using Pretrain.Coordinator;
using Xunit;

namespace Pretrain.Tests.Coordinator;

public sealed class PostgresJournalTests(PostgresServer server) : IClassFixture<PostgresServer>, IDisposable
{
    private readonly string _runDirectory = Directory.CreateTempSubdirectory("pretrain-postgres-run-").FullName;

    public void Dispose() => Directory.Delete(_runDirectory, recursive: true);

    [PostgresFact]
    public async Task A_restarted_coordinator_recovers_the_same_job_state_from_postgresql()
    {
        await JournalRecoveryScenario.RunAsync(JournalOptions.Postgres(server.ConnectionString), _runDirectory);
        // The SQLite default must not have been used on the side.
        Assert.False(File.Exists(Path.Combine(_runDirectory, JournalOptions.JournalFileName)));
    }
}
