using System.Globalization;
using System.Text;

namespace HostOs.Init;

/// <summary>
/// The init's console log: one line per event, prefixed with the time since boot
/// (CLOCK_MONOTONIC, which starts with the kernel) like the kernel's own lines.
/// Writes go straight to fd 1 (the console the kernel gave PID 1), under a lock, and a
/// failed write is swallowed: logging must never be what kills PID 1.
/// </summary>
internal static class Log
{
    private static readonly Lock Gate = new();
    private static readonly Stream Out = Console.OpenStandardOutput();

    public static void Info(string message) => Write("", message);
    public static void Warn(string message) => Write("WARNING: ", message);
    public static void Error(string message) => Write("ERROR: ", message);

    public static void Error(string message, Exception e) =>
        Write("ERROR: ", $"{message}: {e.GetType().Name}: {e.Message}");

    public static string Uptime()
    {
        long ms = Environment.TickCount64;
        return string.Create(CultureInfo.InvariantCulture, $"{ms / 1000,5}.{ms % 1000:D3}");
    }

    private static void Write(string level, string message)
    {
        byte[] line = Encoding.UTF8.GetBytes($"[{Uptime()}] hostos: {level}{message}\n");
        lock (Gate)
        {
            try
            {
                Out.Write(line);
                Out.Flush();
            }
            catch (IOException)
            {
            }
        }
    }
}
