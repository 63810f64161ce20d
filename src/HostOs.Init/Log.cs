using System.Globalization;
using System.Text;
using Microsoft.Win32.SafeHandles;

namespace HostOs.Init;

/// <summary>
/// The init's console log: one line per event, prefixed with the time since boot
/// (CLOCK_MONOTONIC, which starts with the kernel) like the kernel's own lines.
/// Writes go straight to fd 1 (the console the kernel gave PID 1), under a lock, and a
/// failed write is swallowed: logging must never be what kills PID 1.
///
/// Never System.Console here (or anywhere in the init): on a terminal, Console installs
/// the runtime's SIGCHLD handler, and when getpid() == 1 that handler reaps *every*
/// child (dotnet/runtime pal_signal.c, "reapAll = g_pid == 1 || ..."), stealing exits
/// from our reaper. See docs/pid1.md.
/// Every line also goes to the journal (<see cref="Logging.Journal"/>), without waiting.
/// </summary>
internal static class Log
{
    private static readonly Lock Gate = new();

    /// <summary>Writes a line to fd 2, for the command-line uses outside PID 1.</summary>
    public static void Stderr(string line) => WriteFd(2, line);

    public static void Stdout(string line) => WriteFd(1, line);

    private static void WriteFd(int fd, string line) => HostOs.Platform.Interop.Sys.WriteAll(fd, Encoding.UTF8.GetBytes(line + "\n"));

    public static void Info(string message) => Write("", message, Logging.LogRecord.Info);
    public static void Warn(string message) => Write("WARNING: ", message, Logging.LogRecord.Warning);
    public static void Error(string message) => Write("ERROR: ", message, Logging.LogRecord.Error);

    public static void Error(string message, Exception e) =>
        Write("ERROR: ", $"{message}: {e.GetType().Name}: {e.Message}", Logging.LogRecord.Error);

    /// <summary>To the console only: for the journal's own trouble, which must not loop back into it.</summary>
    public static void ConsoleOnly(string message) => WriteConsole("ERROR: ", message);

    /// <summary>
    /// A line of a service's or container's output, for the console. The console is a serial
    /// line under TCG (~11 kB/s): the caller's budget (<see cref="ConsoleBudget"/>) keeps a
    /// flood off it, so the lock the init's own lines need is held for one line at a time.
    /// </summary>
    public static void ServiceLine(string unit, string line) => WriteConsole("", $"[{unit}] {line}");

    public static string Uptime()
    {
        long ms = Environment.TickCount64;
        return string.Create(CultureInfo.InvariantCulture, $"{ms / 1000,5}.{ms % 1000:D3}");
    }

    private static void Write(string level, string message, int priority)
    {
        Logging.Journal.Post(Logging.LogRecord.Now("hostos-init", priority, 1, level.Length == 0 ? message : level + message));
        WriteConsole(level, message);
    }

    private static void WriteConsole(string level, string message)
    {
        // The time is taken under the lock, so the lines' order on the console is their
        // order in time.
        lock (Gate)
        {
            try
            {
                byte[] line = Encoding.UTF8.GetBytes($"[{Uptime()}] hostos: {level}{message}\n");
                HostOs.Platform.Interop.Sys.WriteAll(1, line);
            }
            catch (IOException)
            {
            }
        }
    }
}

/// <summary>
/// How many lines of one source the console shows: a burst of 50, then 5 a second; what is
/// held back is counted and mentioned once the budget allows again. The journal has it all.
/// </summary>
internal sealed class ConsoleBudget
{
    private const double Burst = 50, PerSecond = 5;
    private double _tokens = Burst;
    private long _last = Environment.TickCount64;
    private long _held;

    public void Show(string unit, string line)
    {
        long now = Environment.TickCount64;
        _tokens = Math.Min(Burst, _tokens + (now - _last) / 1000.0 * PerSecond);
        _last = now;
        if (_tokens < 1)
        {
            _held++;
            return;
        }
        if (_held > 0)
        {
            Log.ServiceLine(unit, $"({_held} lines not shown on the console; all are in the journal)");
            _held = 0;
        }
        _tokens--;
        Log.ServiceLine(unit, line);
    }
}
