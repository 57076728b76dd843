using System.Text.Json;
using System.Text.Json.Serialization;

namespace Pretrain.Cli.Runs;

/// <summary>
/// coordinator.json in the run directory: where the coordinator of a running job listens, so
/// `pretrain status --run-dir DIR` can find it (local runs bind a random port).
/// </summary>
public sealed record CoordinatorFile(string Host, int Port, string? MetricsUrl, int ProcessId, DateTime StartedUtc)
{
    public const string FileName = "coordinator.json";

    static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    public void Write(string runDirectory) =>
        File.WriteAllText(Path.Combine(runDirectory, FileName), JsonSerializer.Serialize(this, Json));

    public static CoordinatorFile Read(string runDirectory)
    {
        string path = Path.Combine(runDirectory, FileName);
        if (!File.Exists(path))
            throw new Commands.UserError($"{path} does not exist: no coordinator has run in {runDirectory} (or it predates this version).");
        try
        {
            return JsonSerializer.Deserialize<CoordinatorFile>(File.ReadAllText(path), Json)
                   ?? throw new InvalidDataException($"{path} is empty");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path} is not valid: {e.Message}", e);
        }
    }
}
