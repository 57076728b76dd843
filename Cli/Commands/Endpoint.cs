namespace Pretrain.Cli.Commands;

/// <summary>HOST:PORT options.</summary>
static class Endpoint
{
    public static bool TryParse(string? text, out string host, out int port)
    {
        host = ""; port = 0;
        int colon = text?.LastIndexOf(':') ?? -1;
        if (colon <= 0) return false;
        host = text![..colon];
        return int.TryParse(text[(colon + 1)..], out port) && port is > 0 and < 65536;
    }

    public static (string Host, int Port) Parse(string text, string option) =>
        TryParse(text, out string host, out int port) ? (host, port)
            : throw new UserError($"{option} must be HOST:PORT (e.g. 127.0.0.1:4053), got '{text}'.");
}
