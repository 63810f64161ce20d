using System.Diagnostics;

namespace HostOs.Platform;

/// <summary>
/// Step timings on stderr when HOSTOS_TRACE is set (like runc's --debug): container
/// creation ("trace parent cgroup 3.1 ms"; the stage inherits the setting) and an update's
/// apply ("trace apply signature checked 210.4 ms"). Each step's time is since the last one.
/// </summary>
public static class StepTrace
{
    public static readonly bool Enabled = Environment.GetEnvironmentVariable("HOSTOS_TRACE") is { Length: > 0 };
    private static long _last = Stopwatch.GetTimestamp();

    public static void Step(string who, string step)
    {
        if (!Enabled) return;
        long now = Stopwatch.GetTimestamp();
        // fd 2 directly: System.Console would arm the runtime's SIGCHLD reaper in PID 1.
        HostOs.Platform.Interop.Sys.WriteAll(2, System.Text.Encoding.UTF8.GetBytes($"trace {who} {step} {Stopwatch.GetElapsedTime(_last, now).TotalMilliseconds:F1} ms\n"));
        _last = now;
    }

    /// <summary>Milliseconds since this process was created (start time in /proc/self/stat against /proc/uptime).</summary>
    public static string SinceProcessStart()
    {
        ulong ticks = Kernel.ProcessStat.StartTime(Environment.ProcessId) ?? 0;
        double uptime = double.Parse(File.ReadAllText("/proc/uptime").Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture);
        return ((uptime - ticks / 100.0) * 1000).ToString("F0", System.Globalization.CultureInfo.InvariantCulture);
    }
}
