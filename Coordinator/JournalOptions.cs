namespace Pretrain.Coordinator;

/// <summary>
/// Where the coordinator's event journal lives: a SQLite file in the run directory by default, or a
/// PostgreSQL database for clusters. Provider names are linq2db's (Akka.Persistence.Sql).
/// </summary>
public sealed record JournalOptions(string ProviderName, string ConnectionString)
{
    public const string SqliteProvider = "SQLite.MS";      // Microsoft.Data.Sqlite
    public const string PostgresProvider = "PostgreSQL.15"; // Npgsql; 15 is linq2db's newest dialect name
    public const string JournalFileName = "journal.db";

    public static JournalOptions Sqlite(string path) => new(SqliteProvider, $"Data Source={Path.GetFullPath(path)}");

    /// <summary>The default: <c>journal.db</c> in the run directory.</summary>
    public static JournalOptions InRunDirectory(string runDirectory) => Sqlite(Path.Combine(runDirectory, JournalFileName));

    /// <summary>e.g. <c>Host=db;Port=5432;Database=pretrain;Username=pretrain;Password=…</c></summary>
    public static JournalOptions Postgres(string connectionString) => new(PostgresProvider, connectionString);

    /// <summary>
    /// Journal and snapshot store on Akka.Persistence.Sql. Tables are created on first use. The
    /// plugin's own defaults (its <c>class</c> among them) come from <c>SqlPersistence.DefaultConfiguration</c>,
    /// which the host adds as fallback because we do not use Akka.Hosting.
    /// </summary>
    public string Hocon()
    {
        var plugin = $$"""
            connection-string = "{{Escape(ConnectionString)}}"
            provider-name = "{{Escape(ProviderName)}}"
            auto-initialize = on
            """;
        return $$"""
            akka.persistence {
              journal {
                plugin = "akka.persistence.journal.sql"
                sql {
                  {{plugin}}
                  # SQLite serialises writers anyway; one writer avoids "database is locked" retries.
                  parallelism = {{(ProviderName == SqliteProvider ? 1 : 3)}}
                }
              }
              snapshot-store {
                plugin = "akka.persistence.snapshot-store.sql"
                sql {
                  {{plugin}}
                }
              }
            }
            """;
    }

    private static string Escape(string value) => value.Replace("\\", "\\\\").Replace("\"", "\\\"");
}
