using Pretrain.Shared.Recipes;

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
        catch (Exception e) when (e is UserError or RecipeException or FileNotFoundException or DirectoryNotFoundException or InvalidDataException)
        {
            Console.Error.WriteLine("[pretrain] error: " + e.Message);
            return 2;
        }
        catch (OperationCanceledException)
        {
            Console.Error.WriteLine("[pretrain] cancelled");
            return 130;
        }
    }
}

/// <summary>An error in what the user asked for (options, files); printed without a stack trace.</summary>
public sealed class UserError(string message) : Exception(message);
