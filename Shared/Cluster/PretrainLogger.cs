using Akka.Actor;
using Akka.Event;
using Akka.Dispatch;

namespace Pretrain.Shared.Cluster;

/// <summary>
/// Akka's logger for our processes: one line per event on stderr, "time LEVEL [source] message", and
/// the remoting layer's disassociation reports dropped — a worker leaving at the end of a job closes
/// its connection, and Akka.Remote reports that as a WARNING plus an ERROR with a stack trace although
/// nothing is wrong. Real failures reach us as cluster events and collective errors instead.
/// </summary>
public sealed class PretrainLogger : ReceiveActor, IRequiresMessageQueue<ILoggerMessageQueueSemantics>
{
    public PretrainLogger()
    {
        Receive<InitializeLogger>(_ => Sender.Tell(new LoggerInitialized()));
        Receive<LogEvent>(e =>
        {
            if (IsDisassociationNoise(e)) return;
            string cause = e is Error { Cause: { } c } ? Environment.NewLine + c : "";
            Console.Error.WriteLine($"{e.Timestamp:HH:mm:ss.fff} {Level(e.LogLevel()),-5} [{e.LogSource}] {e.Message}{cause}");
        });
    }

    public static bool IsDisassociationNoise(LogEvent e) =>
        e.LogLevel() >= LogLevel.WarningLevel
        // By name: Shared does not reference Akka.Remote, where the exception type lives.
        && (e is Error { Cause: { } c } && c.GetType().Name == "EndpointDisassociatedException"
            || e.Message?.ToString() is { } m && (m == "Disassociated" || m.Contains("EndpointDisassociatedException", StringComparison.Ordinal)));

    static string Level(LogLevel level) => level switch
    {
        LogLevel.DebugLevel => "debug",
        LogLevel.InfoLevel => "info",
        LogLevel.WarningLevel => "warn",
        _ => "error",
    };
}
