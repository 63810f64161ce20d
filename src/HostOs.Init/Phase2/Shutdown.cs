using System.Diagnostics;
using System.Globalization;
using HostOs.Init.Services;
using HostOs.Platform.Interop;
using HostOs.Platform.Kernel;

namespace HostOs.Init.Phase2;

internal enum PowerAction { PowerOff, Reboot }

/// <summary>
/// Ordered shutdown: services in reverse order (each SIGTERM, its grace, SIGKILL), then
/// every other process (SIGTERM, grace, SIGKILL), sync, unmount writable file systems
/// innermost first (remount read-only what refuses), sync, reboot(2). Each step is
/// guarded: a failure is logged and the sequence goes on, so the machine always goes down.
/// </summary>
internal static class Shutdown
{
    private static readonly TimeSpan Grace = TimeSpan.FromSeconds(5);

    public static void Run(PowerAction action, Supervisor? supervisor)
    {
        Log.Info($"shutdown: {action}");
        if (supervisor is not null)
        {
            Guard("stop-services", () =>
            {
                if (!supervisor.StopAllAsync().Wait(TimeSpan.FromSeconds(60)))
                {
                    Log.Warn("services did not stop within 60 s");
                }
            });
        }
        Guard("kill-remaining", KillRemaining);
        Guard("journal", () =>
        {
            if (!Logging.Journal.Close(TimeSpan.FromSeconds(3))) Log.Warn("the journal did not reach the disk within 3 s");
        });
        Sys.Sync();
        Guard("unmount", UnmountAll);
        Sys.Sync();
        Log.Info(action == PowerAction.Reboot ? "rebooting" : "powering off");
        Sys.Reboot(action == PowerAction.Reboot ? RebootCommand.Restart : RebootCommand.PowerOff);
    }

    private static void Guard(string step, Action action)
    {
        long start = Stopwatch.GetTimestamp();
        try
        {
            action();
            Log.Info($"shutdown step {step} done in {Stopwatch.GetElapsedTime(start).TotalMilliseconds:F0} ms");
        }
        catch (Exception e)
        {
            Log.Error($"shutdown step {step}", e);
        }
    }

    private static void KillRemaining()
    {
        // kill(-1) from PID 1 reaches every process but PID 1 itself (kill(2)).
        Sys.TryKill(-1, Sys.SIGTERM);
        if (WaitForNoProcesses(Grace)) return;
        Log.Warn($"{UserProcesses().Count} processes still running after SIGTERM: SIGKILL");
        Sys.TryKill(-1, Sys.SIGKILL);
        WaitForNoProcesses(TimeSpan.FromSeconds(2));
    }

    private static bool WaitForNoProcesses(TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < timeout)
        {
            if (UserProcesses().Count == 0) return true;
            Thread.Sleep(20);
        }
        return UserProcesses().Count == 0;
    }

    /// <summary>Processes other than PID 1 and kernel threads (children of kthreadd, PID 2).
    /// A zombie awaiting our reaper still counts: it is gone once reaped.</summary>
    internal static List<int> UserProcesses(string proc = "/proc")
    {
        var pids = new List<int>();
        foreach (string dir in Directory.EnumerateDirectories(proc))
        {
            if (!int.TryParse(Path.GetFileName(dir), NumberStyles.None, CultureInfo.InvariantCulture, out int pid) || pid <= 2) continue;
            string stat;
            try { stat = File.ReadAllText(Path.Combine(dir, "stat")); }
            catch (IOException) { continue; } // gone meanwhile
            int? ppid = ParentOf(stat);
            if (ppid is not null && ppid != 2) pids.Add(pid);
        }
        return pids;
    }

    /// <summary>Field 4 of /proc/PID/stat; the command (field 2) may hold spaces and ')'.</summary>
    internal static int? ParentOf(string stat)
    {
        int close = stat.LastIndexOf(')');
        if (close < 0) return null;
        string[] rest = stat[(close + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
        return rest.Length > 1 && int.TryParse(rest[1], CultureInfo.InvariantCulture, out int p) ? p : null;
    }

    private static readonly string[] KernelFileSystems = ["/proc", "/sys", "/dev"];

    private static void UnmountAll()
    {
        List<MountInfo> mounts = MountInfo.ParseAll(File.ReadAllText("/proc/self/mountinfo"));
        // Mounts appear in mountinfo after their parents: the reverse is innermost first.
        for (int i = mounts.Count - 1; i >= 0; i--)
        {
            string target = mounts[i].MountPoint;
            if (target == "/" || KernelFileSystems.Any(k => target == k || target.StartsWith(k + "/", StringComparison.Ordinal)))
            {
                continue;
            }
            int errno = Sys.TryUmount(target);
            if (errno == 0) continue;
            int remount = Sys.TryMount(null, target, null, MountFlags.Remount | MountFlags.ReadOnly);
            Log.Warn($"umount {target}: {HostOs.Platform.Errno.Name(errno)}; " +
                     (remount == 0 ? "remounted read-only" : $"remount read-only: {HostOs.Platform.Errno.Name(remount)}"));
        }
    }
}
