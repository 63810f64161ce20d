using System.Diagnostics;

namespace HostOs.Containers.Runtime;

/// <summary>
/// Step timings of container creation on stderr when HOSTOS_TRACE is set (like runc's
/// --debug): "trace parent cgroup 3.1 ms". The stage inherits the setting.
/// </summary>
internal static class Trace
{
    public static readonly bool Enabled = Environment.GetEnvironmentVariable("HOSTOS_TRACE") is { Length: > 0 };
    private static long _last = Stopwatch.GetTimestamp();

    public static void Step(string who, string step)
    {
        if (!Enabled) return;
        long now = Stopwatch.GetTimestamp();
        // fd 2 directly: System.Console would arm the runtime's SIGCHLD reaper in PID 1.
        using var err = new FileStream(new Microsoft.Win32.SafeHandles.SafeFileHandle(2, ownsHandle: false), FileAccess.Write, 0);
        err.Write(System.Text.Encoding.UTF8.GetBytes($"trace {who} {step} {Stopwatch.GetElapsedTime(_last, now).TotalMilliseconds:F1} ms\n"));
        _last = now;
    }
}
