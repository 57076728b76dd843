using Microsoft.Extensions.Logging;

namespace Pretrain.Worker.Host;

/// <summary>
/// A minimal structured logger for worker processes: one line per event on stderr,
/// "time level [worker] message", which `pretrain local` copies into logs/worker-N.log.
/// (Microsoft.Extensions.Logging.Console is not needed for one line format.)
/// </summary>
public sealed class StderrLogger(string workerId, LogLevel minimum) : ILogger
{
    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => logLevel >= minimum;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        if (!IsEnabled(logLevel)) return;
        string level = logLevel switch
        {
            LogLevel.Trace => "trace", LogLevel.Debug => "debug", LogLevel.Information => "info",
            LogLevel.Warning => "warn", LogLevel.Error => "error", _ => "fatal",
        };
        string line = $"{DateTime.UtcNow:HH:mm:ss.fff} {level,-5} [{workerId}] {formatter(state, exception)}";
        if (exception != null && logLevel >= LogLevel.Error) line += Environment.NewLine + exception;
        Console.Error.WriteLine(line);
    }

    public void Info(string message) => this.LogInformation("{Message}", message);
}
