using System.Text;
using HostOs.Containers.Spec;
using HostOs.Platform;
using HostOs.Platform.Interop;
using Microsoft.Win32.SafeHandles;

namespace HostOs.Containers.Runtime;

/// <summary>
/// The container side of creation (docs/containers.md, "Creating container processes"):
/// a fresh process of our own binary, started by posix_spawn already inside the
/// container's namespaces, so managed code here never runs between a fork and an exec.
/// fd 3 carries the parent's <see cref="StagePlan"/> and then its commands ('G' go: the
/// cgroup is set; 'S' start), fd 4 our reports ('R' ready, or 'E' and a message), fd 5 the
/// state directory (start through its exec.fifo) or, for an exec, the container's mount
/// namespace. It sets up the root file system and the
/// process attributes, reports ready, waits for start, and execve's the user program.
/// </summary>
public static class Stage
{
    public const string Mode = "container-init";
    private const int ControlFd = 3, StatusFd = 4, AuxiliaryFd = 5, StderrFd = 2;

    internal static readonly string[] DefaultDevices = ["null", "zero", "full", "random", "urandom", "tty"];
    internal static readonly (string Link, string To)[] DeviceLinks =
        [("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"), ("ptmx", "pts/ptmx")];

    /// <summary>
    /// Entry point: <c>BINARY container-init</c>. The plan arrives first on fd 3, then 'G'.
    /// Returns only on failure.
    /// </summary>
    public static int Run()
    {
        // Before anything else: our /proc/PID (exe: the host's binary; fd: host files) is
        // closed to the container's processes until execve (CVE-2019-5736's class), and the
        // descriptors the parent handed us (posix_spawn's dup2 clears close-on-exec) can
        // reach no process we start, hooks included (CVE-2024-21626's class).
        Sys.SetNotDumpable();
        for (int fd = ControlFd; fd <= 6; fd++) Sys.SetCloseOnExec(fd);
        using var control = new FileStream(new SafeFileHandle(ControlFd, ownsHandle: true), FileAccess.Read, 1);
        using var status = new FileStream(new SafeFileHandle(StatusFd, ownsHandle: true), FileAccess.Write, 1);
        string step = "read plan";
        int reportTo = StatusFd;
        try
        {
            Trace.Step("stage", "started");
            StagePlan plan = StagePlan.ReadFramed(control);
            Trace.Step("stage", "plan");
            step = "wait for the cgroup";
            if (control.ReadByte() != 'G') return 1;
            using var auxiliary = new SafeFileHandle(AuxiliaryFd, ownsHandle: plan.Exec || plan.StartFifo);
            if (plan.Exec)
            {
                // The container's own mount namespace: its root and cwd become ours (this
                // thread's: CLONE_FS unshared first, as setns(2) requires; execve keeps it).
                step = "join the container's mount namespace";
                Sys.Unshare(CloneFlags.Fs);
                Sys.SetNs(auxiliary, CloneFlags.NewNs, "mnt");
            }
            else
            {
                step = "cgroup namespace";
                // Now that we are in the container's cgroup, it becomes the namespace's root.
                if (plan.OwnCgroup) Sys.Unshare(CloneFlags.NewCgroup);
                step = "root file system";
                Trace.Step("stage", "go");
                PrepareRoot(plan, control, status);
                Trace.Step("stage", "root");
                step = "hostname";
                if (plan.Hostname is { Length: > 0 } h) Sys.SetHostname(h);
                if (plan.Domainname is { Length: > 0 } d) Sys.SetDomainName(d);
                if (plan.OwnNetwork) Sys.SetInterfaceUp("lo");
                step = "sysctl";
                foreach (var (key, value) in plan.Sysctl) File.WriteAllText("/proc/sys/" + key.Replace('.', '/'), value);
                if (plan.OomScoreAdj is int adj) File.WriteAllText("/proc/self/oom_score_adj", adj.ToString(System.Globalization.CultureInfo.InvariantCulture));
            }
            step = "rlimits";
            foreach (var (type, soft, hard) in plan.Rlimits) Sys.SetRlimit(StagePlan.RlimitNumber(type), soft, hard, type);
            SafeFileHandle? tty = null;
            if (plan.Terminal)
            {
                // The pty comes from the container's own devpts; its master goes to whoever
                // holds the console socket, the slave becomes the program's terminal at exec.
                step = "terminal";
                var (master, slave) = Sys.OpenPty("/dev/ptmx");
                using (master)
                using (var socket = new SafeFileHandle(plan.ConsoleFd, ownsHandle: true))
                {
                    if (plan.ConsoleRows > 0 && plan.ConsoleColumns > 0) Sys.SetWindowSize(master, plan.ConsoleRows, plan.ConsoleColumns);
                    Sys.SendDescriptor(socket, master, "/dev/ptmx");
                }
                tty = slave;
            }
            // What can be known before start is checked before ready, so create fails for it.
            step = "process";
            string program = Resolve(plan.Args[0], plan.Env);
            step = $"cwd {plan.Cwd}";
            Directory.SetCurrentDirectory(plan.Cwd);

            Trace.Step("stage", "attributes");
            status.WriteByte((byte)'R');
            status.Flush();
            step = "wait for start";
            if (plan.StartFifo)
            {
                // The creator is gone once it has read 'R'; start comes from another process
                // opening exec.fifo for reading, which unblocks this open.
                control.Dispose();
                status.Dispose();
                reportTo = StderrFd;
                using (var fifo = new FileStream(Sys.OpenAt(auxiliary, "exec.fifo", Sys.O_WRONLY), FileAccess.Write, 1))
                {
                    fifo.WriteByte((byte)'0');
                }
                auxiliary.Dispose(); // the state directory's handle is of no use past start
            }
            else if (control.ReadByte() != 'S')
            {
                return 1; // deleted before start
            }

            if (plan.StartContainerHooks.Count > 0)
            {
                step = "startContainer hooks";
                HookRunner.Run("startContainer", plan.StartContainerHooks, plan.HookState, Sys.Spawn, HookRunner.WaitOwnChild);
            }
            step = "process";
            Sys.Umask(plan.Umask ?? 0x12 /* 022 */);
            // Seccomp as runc orders it: without no_new_privs the filter needs CAP_SYS_ADMIN,
            // so it goes in before the capabilities are dropped; with it, last before execve.
            step = "seccomp";
            if (plan.SeccompFilter.Length > 0 && !plan.NoNewPrivileges) Sys.SetSeccompFilter(plan.SeccompFilter, plan.SeccompFlags);
            if (tty is not null)
            {
                step = "controlling terminal";
                Sys.BecomeTerminalOwner(tty); // a session leader since posix_spawn's setsid
                tty.Dispose();
            }
            step = "credentials";
            SetCredentialsAndCapabilities(plan);
            step = "seccomp";
            if (plan.SeccompFilter.Length > 0 && plan.NoNewPrivileges) Sys.SetSeccompFilter(plan.SeccompFilter, plan.SeccompFlags);
            step = "exec";
            Trace.Step("stage", "credentials, exec");
            // Nothing of ours may leak into the container's program. The status pipe stays
            // open until the exec succeeds (it is close-on-exec): a failed exec is still
            // reported, and the parent's EOF means the program runs.
            control.Dispose();
            auxiliary.Dispose();
            step = "exec " + program;
            Sys.Exec(program, plan.Args, plan.Env);
            return 1; // not reached: Exec throws
        }
        catch (Exception e)
        {
            try
            {
                if (reportTo == StderrFd)
                {
                    // After ready in FIFO mode nobody reads the status pipe: say it on stderr.
                    Sys.WriteAll(StderrFd, Encoding.UTF8.GetBytes($"hostos container init: {step}: {e.Message}\n"));
                }
                else
                {
                    status.Write(Encoding.UTF8.GetBytes($"E{step}: {e.Message}"));
                    status.Flush();
                }
            }
            catch (Exception)
            {
            }
            return 1;
        }
    }

    private static void PrepareRoot(StagePlan plan, FileStream control, FileStream status)
    {
        string rootfs = plan.Rootfs;
        // Nothing we mount may propagate back to the host.
        MountFlags propagation = MountOptions.Parse([plan.Propagation]).Propagation;
        Sys.Mount(null, "/", null, propagation | MountFlags.Recursive);
        // pivot_root needs the new root to be a mount point.
        Sys.Mount(rootfs, rootfs, null, MountFlags.Bind | MountFlags.Recursive);
        Trace.Step("stage", "propagation, root bind");
        foreach (StagePlan.PlannedMount m in plan.Mounts) MountOne(rootfs, m);
        if (plan.Mounts.Any(m => m.Destination == "/dev")) AddDefaultDevices(rootfs, plan.Devices);
        foreach (StagePlan.PlannedDevice d in plan.Devices) MakeDevice(rootfs, d);
        Trace.Step("stage", "mounts, devices");
        if (plan.PauseForHooks)
        {
            // prestart/createRuntime/createContainer hooks run now, while the container's
            // namespaces exist and its root is not yet pivoted into.
            status.WriteByte((byte)'H');
            status.Flush();
            if (control.ReadByte() != 'h') throw new InvalidOperationException("the runtime gave up during the hooks");
        }

        // pivot_root(".", ".") stacks the old root under the new one; detaching it leaves
        // only the container's tree (the trick runc and crun use, pivot_root(2) NOTES).
        Sys.Chdir(rootfs);
        Sys.PivotRoot(".", ".");
        Sys.Umount(".", Sys.MNT_DETACH);
        Sys.Chdir("/");
        Trace.Step("stage", "pivot_root");

        foreach (string path in plan.MaskedPaths) MaskPath(path);
        foreach (string path in plan.ReadonlyPaths) ReadOnly(path);
        if (plan.ReadonlyRoot) Sys.Mount(null, "/", null, MountFlags.Remount | MountFlags.Bind | MountFlags.ReadOnly);
    }

    private static void MountOne(string rootfs, StagePlan.PlannedMount m)
    {
        MountOptions o = MountOptions.Parse(m.Options);
        string target = SecureJoin(rootfs, m.Destination!);
        string type = m.Type ?? "bind";
        bool sourceIsFile = o.Bind && File.Exists(m.Source);
        if (sourceIsFile) { if (!File.Exists(target)) File.WriteAllBytes(target, []); }
        else Directory.CreateDirectory(target);

        if (o.Bind)
        {
            Sys.Mount(m.Source, target, null, MountFlags.Bind | (o.Recursive ? MountFlags.Recursive : 0));
            if (o.Flags != 0) Sys.Mount(null, target, null, MountFlags.Remount | MountFlags.Bind | o.Flags);
        }
        else
        {
            // "cgroup" in a spec means the container's view of the hierarchy; this host is v2.
            string fstype = type == "cgroup" ? "cgroup2" : type;
            Sys.Mount(m.Source ?? fstype, target, fstype, o.Flags, o.Data);
        }
        if (o.Propagation != 0) Sys.Mount(null, target, null, o.Propagation);
    }

    /// <summary>
    /// ROOTFS + DEST without ever following a symbolic link inside the container's tree: a
    /// hostile image could otherwise point a mount destination at the host ("/etc" -> host).
    /// Missing directories are created; a symlink on the way is an error.
    /// </summary>
    internal static string SecureJoin(string rootfs, string destination)
    {
        string current = rootfs;
        foreach (string part in destination.Split('/', StringSplitOptions.RemoveEmptyEntries))
        {
            if (part is "." or "..") throw new InvalidDataException($"mount destination '{destination}' must not contain '{part}'");
            current = Path.Combine(current, part);
            var info = new FileInfo(current);
            if (info.LinkTarget is not null)
            {
                throw new InvalidDataException($"mount destination '{destination}': '{current[rootfs.Length..]}' is a symbolic link in the container's tree");
            }
        }
        return current;
    }

    /// <summary>/dev/null, zero, full, random, urandom, tty bound from the host; the usual links.</summary>
    private static void AddDefaultDevices(string rootfs, List<StagePlan.PlannedDevice> listed)
    {
        foreach (string d in DefaultDevices)
        {
            if (listed.Any(l => l.Path == "/dev/" + d)) continue; // the spec makes this one itself
            string target = Path.Combine(rootfs, "dev", d);
            if (!File.Exists(target)) File.WriteAllBytes(target, []);
            Sys.Mount("/dev/" + d, target, null, MountFlags.Bind);
        }
        foreach (var (link, to) in DeviceLinks)
        {
            string path = Path.Combine(rootfs, "dev", link);
            if (!Path.Exists(path) && new FileInfo(path).LinkTarget is null) File.CreateSymbolicLink(path, to);
        }
    }

    /// <summary>A linux.devices node: mknod where the spec says (never through a symlink), then its mode and owner.</summary>
    private static void MakeDevice(string rootfs, StagePlan.PlannedDevice d)
    {
        string target = SecureJoin(rootfs, d.Path);
        Directory.CreateDirectory(Path.GetDirectoryName(target)!);
        try
        {
            Sys.MakeNode(target, DeviceType(d) | (d.FileMode & 0xFFF), d.Major, d.Minor);
        }
        catch (HostOs.Platform.SysException e) when (e.Errno == HostOs.Platform.Errno.EEXIST)
        {
            return; // already there (a /dev that is not a fresh tmpfs), as runc accepts
        }
        File.SetUnixFileMode(target, (UnixFileMode)(d.FileMode & 0xFFF));
        Sys.Chown(target, d.Uid, d.Gid);
    }

    internal static uint DeviceType(StagePlan.PlannedDevice d) => d.Type switch
    {
        'c' or 'u' => Sys.S_IFCHR, 'b' => Sys.S_IFBLK, 'p' => Sys.S_IFIFO,
        _ => throw new InvalidDataException($"device {d.Path}: type '{d.Type}'"),
    };

    private static void MaskPath(string path)
    {
        if (Directory.Exists(path)) Sys.Mount("tmpfs", path, "tmpfs", MountFlags.ReadOnly, "size=0");
        else if (File.Exists(path)) Sys.Mount("/dev/null", path, null, MountFlags.Bind);
    }

    private static void ReadOnly(string path)
    {
        if (!Path.Exists(path)) return;
        Sys.Mount(path, path, null, MountFlags.Bind | MountFlags.Recursive);
        Sys.Mount(null, path, null, MountFlags.Remount | MountFlags.Bind | MountFlags.ReadOnly | MountFlags.NoSuid | MountFlags.NoDev | MountFlags.NoExec);
    }

    /// <summary>
    /// The order runc uses: keep capabilities across the uid change, shrink the bounding
    /// set, change ids (this thread only), set the capability sets, raise ambient ones,
    /// then no_new_privs. All per thread, on the thread that execve's.
    /// </summary>
    private static void SetCredentialsAndCapabilities(StagePlan plan)
    {
        ulong Set(List<string> names) => StagePlan.CapabilityMask(names);
        ulong bounding = Set(plan.Bounding);
        Sys.SetKeepCaps(true);
        for (int cap = 0; cap <= Sys.LastCapability; cap++)
        {
            if ((bounding & (1UL << cap)) == 0) Sys.DropBoundingCapability(cap);
        }
        Sys.SetCredentialsForThisThread(plan.Uid, plan.Gid, plan.AdditionalGids);
        Sys.SetCapabilities(Set(plan.Effective), Set(plan.Permitted), Set(plan.Inheritable));
        Sys.ClearAmbientCapabilities();
        foreach (string a in plan.Ambient)
        {
            // The kernel raises an ambient capability only if it is permitted and
            // inheritable; runc warns and goes on when it is not (its default spec lists
            // ambient ones without inheritable ones), and so do we (seen with HOSTOS_TRACE).
            int cap = StagePlan.CapabilityNumber(a);
            if (plan.Permitted.Contains(a) && plan.Inheritable.Contains(a)) Sys.RaiseAmbientCapability(cap);
            else if (Trace.Enabled) Trace.Step("stage", $"ambient {a} skipped: not both permitted and inheritable");
        }
        Sys.SetKeepCaps(false);
        if (plan.NoNewPrivileges) Sys.SetNoNewPrivileges();
    }

    /// <summary>args[0] as execvp would find it, with the container's PATH.</summary>
    private static string Resolve(string program, List<string> env)
    {
        if (program.Contains('/')) return program;
        string path = StagePlan.SearchPath(env);
        foreach (string dir in path.Split(':', StringSplitOptions.RemoveEmptyEntries))
        {
            string candidate = Path.Combine(dir, program);
            if (File.Exists(candidate)) return candidate;
        }
        throw new FileNotFoundException($"'{program}' is not in the container's PATH ({path})");
    }
}
