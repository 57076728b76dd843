using System.Diagnostics;
using Xunit;

namespace Pretrain.Tests.Coordinator;

/// <summary>
/// The PostgreSQL server the journal tests use: the one in <c>PRETRAIN_TEST_POSTGRES</c> (./test.sh
/// starts one for the whole suite), else a throwaway one started here with scripts/postgres-start.sh
/// and stopped afterwards.
/// </summary>
public sealed class PostgresServer : IAsyncLifetime
{
    public const string EnvironmentVariable = "PRETRAIN_TEST_POSTGRES";
    private const string Binaries = "/usr/lib/postgresql/15/bin";

    private string? _ownedDirectory;

    public string ConnectionString { get; private set; } = "";

    /// <summary>Why the tests cannot run here, or null when they can.</summary>
    public static string? Unavailable()
    {
        if (!string.IsNullOrWhiteSpace(Environment.GetEnvironmentVariable(EnvironmentVariable))) return null;
        if (File.Exists(Path.Combine(Binaries, "initdb"))) return null;
        // The start script installs the Debian package itself when it can.
        if (Environment.UserName == "root" && File.Exists("/usr/bin/apt-get")) return null;
        return $"PostgreSQL 15 binaries not found in {Binaries} and apt-get cannot install them here; " +
               $"set {EnvironmentVariable} to a server's connection string to run this test";
    }

    public async Task InitializeAsync()
    {
        var external = Environment.GetEnvironmentVariable(EnvironmentVariable);
        if (!string.IsNullOrWhiteSpace(external))
        {
            ConnectionString = external;
            return;
        }
        if (Unavailable() is not null) return; // the tests are skipped
        _ownedDirectory = Path.Combine(Path.GetTempPath(), $"pretrain-postgres-{Guid.NewGuid():N}");
        var output = await RunScriptAsync("postgres-start.sh", _ownedDirectory);
        ConnectionString = output.Trim().Split('\n')[^1];
    }

    public async Task DisposeAsync()
    {
        if (_ownedDirectory is not null) await RunScriptAsync("postgres-stop.sh", _ownedDirectory);
    }

    private static async Task<string> RunScriptAsync(string script, string directory)
    {
        var start = new ProcessStartInfo("bash", [Path.Combine(ScriptsDirectory(), script), directory])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"Cannot start {script}");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        // Generous: the first run may install the postgresql package.
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        await process.WaitForExitAsync(timeout.Token);
        if (process.ExitCode != 0)
            throw new InvalidOperationException($"{script} exited with {process.ExitCode}: {await stderr}");
        return await stdout;
    }

    private static string ScriptsDirectory()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "scripts", "postgres-start.sh"))) return Path.Combine(dir.FullName, "scripts");
        throw new InvalidOperationException($"No scripts/postgres-start.sh above {AppContext.BaseDirectory}");
    }
}

/// <summary>A fact that is skipped only when no PostgreSQL server can be had (see <see cref="PostgresServer.Unavailable"/>).</summary>
public sealed class PostgresFactAttribute : FactAttribute
{
    public PostgresFactAttribute() => Skip = PostgresServer.Unavailable();
}
