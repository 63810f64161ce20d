using HostOs.Platform.Disk;
using HostOs.Platform.Interop;
using HostOs.Platform.Kernel;

namespace HostOs.Init.Phase1;

/// <summary>
/// Phase 1, from the initramfs: just enough to reach the real root. Mount the kernel's
/// file systems, load the modules the initramfs carries, find the slot named on the
/// kernel command line by GPT label or UUID, put dm-verity over it when the command line
/// carries its root hash (<c>hostos.verity=</c>), mount it read-only, move the pseudo file
/// systems across, switch root, and exec the root's own hostos-init (phase 2).
/// The state partition is checked and mounted by phase 2, with e2fsck from the root:
/// that keeps the initramfs to our binary, libc and three modules.
/// </summary>
internal static class InitramfsBoot
{
    private const string NewRoot = "/sysroot";
    public const string Phase2Path = "/sbin/hostos-init";
    private static Watchdog? s_watchdog;

    public static void Run()
    {
        Log.Info("phase 1 (initramfs)");
        BootStep.Run("mount-kernel-fs", () =>
        {
            Directory.CreateDirectory("/dev");
            Directory.CreateDirectory("/proc");
            Directory.CreateDirectory("/sys");
            Sys.Mount("devtmpfs", "/dev", "devtmpfs", MountFlags.NoSuid, "mode=0755");
            Sys.Mount("proc", "/proc", "proc", MountFlags.NoSuid | MountFlags.NoDev | MountFlags.NoExec);
            Sys.Mount("sysfs", "/sys", "sysfs", MountFlags.NoSuid | MountFlags.NoDev | MountFlags.NoExec);
        });
        var cmdline = KernelCommandLine.Parse(File.ReadAllText("/proc/cmdline"));
        // A failed module is reported; if the root's driver is among them, mount-root says so.
        BootStep.Run("load-modules", () => ModuleLoader.Load(ModuleLoader.ModulesDirectory(), null));
        // Armed from here: a hang finding or mounting the root resets the machine. Its
        // descriptor closes at the exec below without stopping it; phase 2 takes it over.
        s_watchdog = Health.BootWatchdog.ArmForPhase1();

        string spec = RootSpec(cmdline);
        string fstype = cmdline.Get("hostos.rootfstype") ?? "erofs";
        BootStep.Run("mount-root", () =>
        {
            BlockPartition root = BlockDevices.WaitFor(spec, TimeSpan.FromSeconds(15));
            string device = root.Device;
            if (VerityParameters.FromCommandLine(cmdline) is VerityParameters verity)
            {
                // Every block read from the root is checked against the hash tree under the
                // entry's root hash; a changed block reads as an I/O error, never as data.
                device = DeviceMapper.CreateReadOnly("root", "verity", verity.DataBlocks * (VerityParameters.BlockSize / 512), verity.Table(root.Device));
                Log.Info($"root: {root} checked by dm-verity as {device}, root hash {verity.RootHash}");
            }
            Log.Info($"root: {device} as {fstype}");
            Directory.CreateDirectory(NewRoot);
            Sys.Mount(device, NewRoot, fstype, MountFlags.ReadOnly);
            if (!File.Exists(NewRoot + Phase2Path))
            {
                throw new FileNotFoundException($"the root on {device} has no {Phase2Path}");
            }
        });
        BootStep.Run("switch-root", SwitchRoot);
        Log.Info($"phase 1 done, exec {Phase2Path}");
        Sys.Exec(Phase2Path, [Phase2Path], [Processes.ProcessTable.DefaultPath]);
    }

    /// <summary><c>hostos.root=PARTLABEL=…|PARTUUID=…</c>, or <c>hostos.slot=a</c> for PARTLABEL=root-a.</summary>
    public static string RootSpec(KernelCommandLine cmdline)
    {
        string? root = cmdline.Get("hostos.root");
        if (root is not null) return root;
        string slot = cmdline.Get("hostos.slot")
            ?? throw new InvalidDataException("kernel command line names no root: add hostos.slot=a|b or hostos.root=PARTLABEL=…");
        if (slot is not ("a" or "b"))
        {
            throw new InvalidDataException($"kernel command line: hostos.slot={slot} is not 'a' or 'b'");
        }
        return $"PARTLABEL=root-{slot}";
    }

    /// <summary>
    /// switch_root the classic way (as busybox and systemd do it): the initramfs is the
    /// rootfs, which cannot be pivot_root'ed away, so move the new root over "/" and
    /// chroot into it (see pivot_root(2), "rootfs" note; switch_root(8)).
    /// </summary>
    private static void SwitchRoot()
    {
        // /dev is NOT carried across (phase 2 mounts its own devtmpfs first thing): the
        // .NET runtime reads /dev/urandom while it starts, and before the kernel's CRNG is
        // ready such a read runs the kernel's jitter entropy generator (Linux >= 5.18,
        // urandom_read_iter -> try_to_generate_entropy): ~1.1 s under TCG without RDRAND.
        // Without /dev at start-up the runtime skips it. See docs/boot.md, "Entropy".
        Sys.Umount("/dev", Sys.MNT_DETACH);
        foreach (string fs in new[] { "/proc", "/sys" })
        {
            Sys.Mount(fs, NewRoot + fs, null, MountFlags.Move);
        }
        Sys.Chdir(NewRoot);
        Sys.Mount(NewRoot, "/", null, MountFlags.Move);
        Sys.Chroot(".");
        Sys.Chdir("/");
    }
}
