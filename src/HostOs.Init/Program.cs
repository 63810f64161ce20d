using HostOs.Init.Phase1;
using HostOs.Init.Phase2;
using HostOs.Platform;
using HostOs.Platform.Interop;

namespace HostOs.Init;

/// <summary>
/// hostos-init: PID 1 of HostOS. In the initramfs (marked by /etc/initrd-release) it runs
/// phase 1 and execs the root's own copy for phase 2. PID 1 must never exit (the kernel
/// panics): every failure ends in an orderly reboot, and a last guard reboots by force.
/// </summary>
internal static class Program
{
    public const string Version = "0.1.0";

    private static int Main(string[] args)
    {
        if (args.Length > 0 && args[0] == "--version")
        {
            Log.Stdout($"hostos-init {Version}");
            return 0;
        }
        if (Sys.GetPid() != 1)
        {
            Log.Stderr("hostos-init: must run as PID 1 (the kernel's init)");
            return 2;
        }
        try
        {
            Log.Info($"hostos-init {Version}");
            if (File.Exists("/etc/initrd-release")) InitramfsBoot.Run();
            else new SystemBoot().Run();
        }
        catch (Exception e)
        {
            Log.Error("fatal", e);
        }
        // Only reached when everything above failed, even the orderly shutdown.
        Log.Error("PID 1 cannot go on: syncing and rebooting in 10 s");
        Sys.Sync();
        Thread.Sleep(10_000);
        try { Sys.Reboot(RebootCommand.Restart); } catch (SysException) { }
        Thread.Sleep(Timeout.Infinite);
        return 1;
    }
}
