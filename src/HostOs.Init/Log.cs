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
/// </summary>
internal static class Log
{
    private static readonly Lock Gate = new();

    /// <summary>Writes a line to fd 2, for the command-line uses outside PID 1.</summary>
    public static void Stderr(string line) => WriteFd(2, line);

    public static void Stdout(string line) => WriteFd(1, line);

    private static void WriteFd(int fd, string line) => HostOs.Platform.Interop.Sys.WriteAll(fd, Encoding.UTF8.GetBytes(line + "\n"));

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
