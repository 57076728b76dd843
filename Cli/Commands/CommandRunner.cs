using Pretrain.Shared.IO;
using Pretrain.Shared.Recipes;
using Pretrain.Shared.Security;

namespace Pretrain.Cli.Commands;

/// <summary>Runs a command body and turns the errors a user can fix into one clear line and exit code 2.</summary>
static class CommandRunner
{
    public static async Task<int> RunAsync(Func<Task<int>> body)
    {
        try
        {
            return await body();
        }
        catch (Exception e) when (e is UserError or RecipeException or SecretException or CertificateException or FileNotFoundException or DirectoryNotFoundException or InvalidDataException)
        {
            Console.Error.WriteLine("[pretrain] error: " + e.Message);
            return 2;
        }
        catch (OperationCanceledException)
        {
            Console.Error.WriteLine("[pretrain] cancelled");
            return 130;
        }
        catch (Exception e) when (IoErrors.IsFileSystem(e))
        {
            // A full or read-only disk, a missing permission: the path and errno say it all.
            Console.Error.WriteLine($"[pretrain] error: {IoErrors.Describe(e)}: {e.Message}");
            return 1;
        }
        catch (Exception e)
        {
            // A bug or an environment we did not foresee: one line on the terminal, the whole story in a file.
            string log = Path.Combine(Path.GetTempPath(), $"pretrain-{Environment.ProcessId}-crash.log");
            try { File.WriteAllText(log, $"{DateTime.UtcNow:O} pretrain {string.Join(' ', Environment.GetCommandLineArgs().Skip(1))}\n{e}\n"); }
            catch (Exception) { log = "(could not be written)"; }
            Console.Error.WriteLine($"[pretrain] error: unexpected {e.GetType().Name}: {e.Message} (details in {log})");
            return 1;
        }
    }
}

/// <summary>An error in what the user asked for (options, files); printed without a stack trace.</summary>
public sealed class UserError(string message) : Exception(message);
