using System.Globalization;
using System.Text;
using HostOs.Containers.Runtime;
using HostOs.Containers.Spec;
using HostOs.Platform.Interop;
using Microsoft.Win32.SafeHandles;

namespace HostOs.GuestCheck;

/// <summary>
/// hostos-guestcheck containers: containers made by HostOs.Containers from a busybox
/// bundle are isolated as their spec says, and leave nothing behind (the stage is
/// hostos-stage, beside this binary or installed). One PASS/FAIL line per property.
/// </summary>
internal static class ContainerChecks
{
    private const string Bundle = "/tmp/guestcheck-bundle";
    private static int _next;

    public static int Run()
    {
        MakeBundle();
        int failures = 0;
        string hostMounts = HostMounts();
        string hostName = File.ReadAllText("/proc/sys/kernel/hostname").Trim();

        failures += Check("pid-namespace", () =>
        {
            var (status, output) = RunContainer(Spec("echo pid=$$; ls /proc | grep -c '^[0-9]'"));
            Expect(status, 0, output);
            string[] lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            if (lines[0] != "pid=1") throw new InvalidOperationException($"the shell is '{lines[0]}', not pid 1");
            if (int.Parse(lines[1]) > 3) throw new InvalidOperationException($"{lines[1]} processes visible in /proc");
            return $"the container's shell is PID 1 and sees {lines[1]} processes";
        });
        failures += Check("uts-and-mounts", () =>
        {
            var (status, output) = RunContainer(Spec("hostname; grep -c . /proc/mounts; grep -c ' /state ' /proc/mounts; true"));
            Expect(status, 0, output);
            string[] lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            if (lines[0] != "guestcheck") throw new InvalidOperationException($"hostname inside is '{lines[0]}'");
            if (lines[2] != "0") throw new InvalidOperationException("the host's /state is visible inside");
            string after = File.ReadAllText("/proc/sys/kernel/hostname").Trim();
            if (after != hostName) throw new InvalidOperationException($"the host's hostname changed to {after}");
            return $"hostname 'guestcheck' inside, host's '{hostName}' untouched; {lines[1]} mounts inside, none of the host's";
        });
        failures += Check("capabilities", () =>
        {
            var (status, output) = RunContainer(Spec("grep CapEff /proc/self/status; mount -t tmpfs none /mnt 2>&1; echo mount=$?"));
            string eff = output.Split('\n')[0].Split('\t').Last();
            ulong expected = (1UL << 5) | (1UL << 10); // CAP_KILL, CAP_NET_BIND_SERVICE
            if (Convert.ToUInt64(eff, 16) != expected) throw new InvalidOperationException($"CapEff {eff}, expected {expected:x16}");
            if (!output.Contains("mount=1") && !output.Contains("mount=255")) throw new InvalidOperationException($"mount worked without CAP_SYS_ADMIN: {output}");
            return $"CapEff {eff}; mount refused: {output.Split('\n')[1].Trim()}";
        });
        failures += Check("user-and-exit-code", () =>
        {
            RuntimeSpec s = Spec("id -u; id -g; exit 7");
            s.Process!.User = new User { Uid = 1000, Gid = 1000 };
            var (status, output) = RunContainer(s);
            Expect(status, 7, output);
            if (output.Trim() != "1000\n1000") throw new InvalidOperationException($"ids inside: {output.Trim().Replace('\n', ' ')}");
            return "uid/gid 1000 inside, exit code 7 seen by the host";
        });
        failures += Check("cgroup", () =>
        {
            RuntimeSpec s = Spec("cat /proc/self/cgroup; cat /sys/fs/cgroup/memory.max");
            s.Linux!.Namespaces!.Add(new Namespace { Type = "cgroup" });
            s.Mounts!.Add(new Mount { Destination = "/sys/fs/cgroup", Type = "cgroup2", Source = "cgroup", Options = ["nosuid", "noexec", "nodev", "ro"] });
            s.Linux.Resources = new Resources { Memory = new Memory { Limit = 64 << 20 }, Pids = new Pids { Limit = 32 } };
            var (status, output) = RunContainer(s);
            Expect(status, 0, output);
            if (!output.Contains("0::/") || !output.Contains((64 << 20).ToString())) throw new InvalidOperationException($"inside: {output}");
            return $"own cgroup namespace and limits: {output.Replace('\n', ' ').Trim()}";
        });
        failures += Check("hostile-mount", () =>
        {
            // A symlink in the image pointing a mount destination at the host is refused.
            File.CreateSymbolicLink(Path.Combine(Bundle, "rootfs", "evil"), "/etc");
            try
            {
                RuntimeSpec s = Spec("true");
                s.Mounts!.Add(new Mount { Destination = "/evil/x", Type = "tmpfs", Source = "tmpfs" });
                RunContainer(s);
                throw new InvalidOperationException("a mount through a symlink was accepted");
            }
            catch (ContainerException e) when (e.Message.Contains("symbolic link"))
            {
                if (Directory.Exists("/etc/x")) throw new InvalidOperationException("/etc/x appeared on the host");
                return e.Message;
            }
            finally
            {
                File.Delete(Path.Combine(Bundle, "rootfs", "evil"));
            }
        });
        failures += Check("devices", () =>
        {
            // runc's default rule (deny all) plus the VM's disk listed as a node: the usual
            // nodes and the listed disk open; its first partition, made with mknod inside
            // (which root could open if the filter were missing), does not.
            string[] disk = File.ReadAllText("/sys/block/vda/dev").Trim().Split(':');
            RuntimeSpec s = Spec("echo x > /dev/null && echo null-ok; head -c 1 /dev/disk0 >/dev/null && echo listed-ok; " +
                                 $"ls -ln /dev/disk0; mknod /dev/part1 b {disk[0]} 1 && echo mknod-ok; " +
                                 "head -c 1 /dev/part1 >/dev/null && echo part-open; true");
            foreach (var set in new[] { s.Process!.Capabilities!.Bounding!, s.Process.Capabilities.Effective!, s.Process.Capabilities.Permitted! }) set.Add("CAP_MKNOD");
            s.Linux!.Devices = [new Device { Path = "/dev/disk0", Type = "b", Major = long.Parse(disk[0]), Minor = long.Parse(disk[1]), FileMode = 0x1A4 /* 0644 */, Uid = 1000, Gid = 1000 }];
            s.Linux.Resources = new Resources { Devices = [new DeviceRule { Allow = false, Access = "rwm" }] };
            var (status, output) = RunContainer(s);
            Expect(status, 0, output);
            foreach (string expected in new[] { "null-ok", "listed-ok", "brw-r--r--", " 1000 ", "mknod-ok", "Operation not permitted" })
            {
                if (!output.Contains(expected)) throw new InvalidOperationException($"'{expected}' missing: {output}");
            }
            if (output.Contains("part-open")) throw new InvalidOperationException($"a denied device opened: {output}");
            return $"deny-all honoured: /dev/null and the listed disk {disk[0]}:{disk[1]} (0644, uid 1000) open; its partition made inside does not";
        });

        failures += Check("seccomp", () =>
        {
            // ERRNO with its own errno for mkdir; KILL_PROCESS for chmod, exec'd as the init.
            RuntimeSpec s = Spec("mkdir /tmp/a; echo mkdir=$?; exec chmod 600 /tmp");
            s.Linux!.Seccomp = new Seccomp
            {
                DefaultAction = "SCMP_ACT_ALLOW",
                Architectures = ["SCMP_ARCH_X86_64"],
                Syscalls =
                [
                    new SeccompSyscall { Names = ["mkdir", "mkdirat"], Action = "SCMP_ACT_ERRNO", ErrnoRet = 13 },
                    new SeccompSyscall { Names = ["chmod", "fchmodat", "fchmod"], Action = "SCMP_ACT_KILL_PROCESS" },
                ],
            };
            var (status, output) = RunContainer(s);
            if (!output.Contains("Permission denied") || !output.Contains("mkdir=1")) throw new InvalidOperationException($"mkdir was not refused with EACCES: {output}");
            if (status.Exited || status.Signal != 31) throw new InvalidOperationException($"chmod did not end in SIGSYS: {status}; {output}");
            return $"mkdir refused with EACCES, chmod killed the process ({status})";
        });

        string hostMountsAfter = HostMounts();
        string[] cgroupsLeft = Directory.Exists("/sys/fs/cgroup/hostos") ? Directory.GetDirectories("/sys/fs/cgroup/hostos") : [];
        bool clean = hostMounts == hostMountsAfter && cgroupsLeft.Length == 0;
        Console.WriteLine(clean ? "PASS nothing left on the host (mounts, cgroups)" : $"FAIL the host's mounts or cgroups changed: {Changes(hostMounts, hostMountsAfter, cgroupsLeft)}");
        if (!clean) failures++;
        Console.WriteLine(failures == 0 ? "PASS containers" : $"FAIL containers: {failures} check(s) failed");
        return failures == 0 ? 0 : 1;
    }

    /// <summary>
    /// N containers created, started and deleted at the same time, each exiting with its
    /// own code: every code is collected, and afterwards no fd, mount, cgroup or zombie is
    /// left. Each container has its own bundle (a config.json) over one shared read-only rootfs.
    /// </summary>
    public static int Stress(int count)
    {
        MakeBundle();
        OpenFds(); // warm-up: the runtime opens some descriptors lazily on first use, once
        var fdsBeforeSet = OpenFds();
        int fdsBefore = fdsBeforeSet.Count;
        string mountsBefore = HostMounts();
        for (int i = 0; i < count; i++)
        {
            string bundle = $"/tmp/guestcheck-stress/{i}";
            Directory.CreateDirectory(bundle);
            RuntimeSpec spec = Spec($"exit {i % 250}");
            spec.Root!.Path = Path.Combine(Bundle, "rootfs");
            File.WriteAllText(Path.Combine(bundle, "config.json"), SpecLoader.ToJson(spec));
        }
        var codes = new int[count];
        var errors = new System.Collections.Concurrent.ConcurrentBag<string>();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var threads = Enumerable.Range(0, count).Select(i => new Thread(() =>
        {
            try
            {
                var c = ContainerProcess.Create($"stress-{i}", $"/tmp/guestcheck-stress/{i}", req => Sys.Spawn(req));
                c.Start();
                Sys.WaitPid(c.Pid, 0, out ExitStatus status);
                codes[i] = status.Exited ? status.Code : -status.Signal;
                c.Delete();
            }
            catch (Exception e)
            {
                errors.Add($"{i}: {e.Message}");
                codes[i] = -1000;
            }
        }) { IsBackground = true }).ToList();
        threads.ForEach(t => t.Start());
        bool finished = threads.All(t => t.Join(TimeSpan.FromMinutes(5)));
        double seconds = clock.Elapsed.TotalSeconds;
        Cleanup();
        Directory.Delete("/tmp/guestcheck-stress", true);

        var problems = new List<string>(errors.Take(5));
        if (!finished) problems.Add("deadlock: not all containers finished within 5 minutes");
        int wrong = Enumerable.Range(0, count).Count(i => codes[i] != i % 250);
        if (wrong > 0) problems.Add($"{wrong} exit codes wrong or missing");
        var fdsAfterSet = OpenFds();
        int fdsAfter = fdsAfterSet.Count;
        var leaked = fdsAfterSet.Except(fdsBeforeSet).ToList();
        if (leaked.Count > 0) problems.Add($"fds: {fdsBefore} before, {fdsAfter} after: {string.Join(", ", leaked)}");
        string mountsAfter = HostMounts();
        if (mountsAfter != mountsBefore) problems.Add($"the host's mounts changed: {Changes(mountsBefore, mountsAfter, [])}");
        if (Directory.Exists("/sys/fs/cgroup/hostos") && Directory.GetDirectories("/sys/fs/cgroup/hostos").Length > 0) problems.Add("cgroups left under /sys/fs/cgroup/hostos");
        int zombies = Directory.GetDirectories("/proc").Count(d => int.TryParse(Path.GetFileName(d), out _) && File.Exists(d + "/stat") && SafeRead(d + "/stat").Contains(") Z "));
        if (zombies > 0) problems.Add($"{zombies} zombies");
        string summary = $"{count} containers at once in {seconds:F1} s ({count / seconds:F1}/s), all exit codes collected, " +
                         $"fds {fdsBefore}->{fdsAfter}, no mount, cgroup or zombie left";
        Console.WriteLine(problems.Count == 0 ? $"PASS containers-stress: {summary}" : $"FAIL containers-stress: {string.Join("; ", problems)}");
        return problems.Count == 0 ? 0 : 1;
    }

    /// <summary>This process's open descriptors as "N -> target".</summary>
    private static HashSet<string> OpenFds() =>
        Directory.GetFiles("/proc/self/fd").Select(f => $"{Path.GetFileName(f)} -> {new FileInfo(f).LinkTarget}").ToHashSet();

    private static string SafeRead(string path)
    {
        try { return File.ReadAllText(path); } catch (IOException) { return ""; }
    }

    private static int Check(string name, Func<string> check)
    {
        try
        {
            Console.WriteLine($"PASS container {name}: {check()}");
            return 0;
        }
        catch (Exception e)
        {
            Console.WriteLine($"FAIL container {name}: {e.GetType().Name}: {e.Message}");
            return 1;
        }
    }

    private static void Expect(ExitStatus status, int code, string output)
    {
        if (!(status.Exited && status.Code == code)) throw new InvalidOperationException($"container ended with {status}, expected exit code {code}; output: {output}");
    }

    /// <summary>make-bundle DIR ARGS...: a busybox bundle whose process runs ARGS (benchmarks).</summary>
    public static int MakeBundle(string dir, string[] args)
    {
        MakeBundle(dir);
        RuntimeSpec spec = Spec("true");
        spec.Process!.Args = [.. args];
        File.WriteAllText(Path.Combine(dir, "config.json"), SpecLoader.ToJson(spec));
        return 0;
    }

    /// <summary>container-run BUNDLE ID: create, start, wait, delete; exits with the container's code.</summary>
    public static int RunOnce(string bundle, string id)
    {
        var c = ContainerProcess.Create(id, bundle, req => Sys.Spawn(req));
        c.Start();
        Sys.WaitPid(c.Pid, 0, out ExitStatus status);
        c.Delete();
        return status.ShellCode;
    }

    /// <summary>
    /// container-run BUNDLE ID COUNT: COUNT containers one after another in this one process,
    /// as PID 1 starts them (the runtime's code already run once); each must exit 0.
    /// </summary>
    public static int RunMany(string bundle, string id, int count)
    {
        for (int i = 0; i < count; i++)
        {
            int code = RunOnce(bundle, id + "-" + i.ToString(CultureInfo.InvariantCulture));
            if (code != 0) throw new InvalidOperationException($"container {i} of {count} exited with {code}");
        }
        return 0;
    }

    private static void MakeBundle() => MakeBundle(Bundle);

    private static void MakeBundle(string bundleDir)
    {
        if (Directory.Exists(bundleDir)) Directory.Delete(bundleDir, true);
        string bin = Directory.CreateDirectory(Path.Combine(bundleDir, "rootfs", "bin")).FullName;
        File.Copy("/usr/bin/busybox", Path.Combine(bin, "busybox"));
        foreach (string applet in new[] { "sh", "echo", "ls", "grep", "cat", "hostname", "mount", "id", "true", "sleep", "head", "mknod", "mkdir", "chmod" })
        {
            File.CreateSymbolicLink(Path.Combine(bin, applet), "busybox");
        }
        foreach (string d in new[] { "proc", "dev", "tmp", "mnt", "sys" }) Directory.CreateDirectory(Path.Combine(bundleDir, "rootfs", d));
    }

    private static RuntimeSpec Spec(string script) => new()
    {
        OciVersion = "1.0.2", // what `runc spec` writes; Debian 12's crun 1.8.1 refuses 1.2.0
        Root = new Root { Path = "rootfs", Readonly = true },
        Hostname = "guestcheck",
        Process = new Process
        {
            Args = ["sh", "-c", script],
            Env = ["PATH=/bin"],
            Cwd = "/",
            NoNewPrivileges = true,
            Capabilities = new Capabilities
            {
                Bounding = ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
                Effective = ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
                Permitted = ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
            },
            Rlimits = [new Rlimit { Type = "RLIMIT_NOFILE", Soft = 1024, Hard = 1024 }],
        },
        Mounts =
        [
            new Mount { Destination = "/proc", Type = "proc", Source = "proc" },
            new Mount { Destination = "/dev", Type = "tmpfs", Source = "tmpfs", Options = ["nosuid", "strictatime", "mode=755", "size=65536k"] },
            new Mount { Destination = "/tmp", Type = "tmpfs", Source = "tmpfs", Options = ["nosuid", "nodev"] },
        ],
        Linux = new LinuxSpec
        {
            Namespaces = [new() { Type = "pid" }, new() { Type = "mount" }, new() { Type = "uts" }, new() { Type = "ipc" }, new() { Type = "network" }],
            MaskedPaths = ["/proc/kcore", "/proc/keys"],
            ReadonlyPaths = ["/proc/sys", "/proc/sysrq-trigger"],
        },
    };

    private static (ExitStatus Status, string Output) RunContainer(RuntimeSpec spec)
    {
        File.WriteAllText(Path.Combine(Bundle, "config.json"), SpecLoader.ToJson(spec));
        var (read, write) = Sys.Pipe();
        try
        {
            ContainerProcess c;
            using (write)
            {
                c = ContainerProcess.Create($"guestcheck-{++_next}", Bundle, req => Sys.Spawn(req), write);
            }
            c.Start();
            string output;
            using (var reader = new StreamReader(new FileStream(read, FileAccess.Read), Encoding.UTF8)) output = reader.ReadToEnd();
            Sys.WaitPid(c.Pid, 0, out ExitStatus status);
            c.Delete();
            return (status, output);
        }
        finally
        {
            Cleanup();
        }
    }

    /// <summary>The runtime's parent cgroup, once the last container is gone.</summary>
    private static void Cleanup()
    {
        while (Sys.WaitPid(-1, Sys.WNOHANG, out _) > 0) { } // stages that failed before exec
        try { HostOs.Containers.Cgroups.Cgroup.Open(HostOs.Containers.Cgroups.Cgroup.DefaultRoot, "hostos").Delete(); }
        catch (HostOs.Containers.Cgroups.CgroupException) { }
    }

    /// <summary>What changed on the host: mounts gone and new (mountinfo lines), cgroups left.</summary>
    private static string Changes(string mountsBefore, string mountsAfter, string[] cgroupsLeft)
    {
        string[] before = mountsBefore.Split('\n'), after = mountsAfter.Split('\n');
        var parts = before.Except(after).Select(l => $"mount gone: {l}")
            .Concat(after.Except(before).Select(l => $"mount new: {l}"))
            .Concat(cgroupsLeft.Select(c => $"cgroup left: {c}"));
        return string.Join("; ", parts.DefaultIfEmpty("the mounts' order"));
    }

    /// <summary>
    /// The host's mounts, without those of the init's own system containers (their roots
    /// under /run/hostos/containers), which come and go with their restarts while the checks run.
    /// </summary>
    private static string HostMounts() =>
        string.Join('\n', File.ReadAllLines("/proc/self/mountinfo").Where(l => !l.Contains(" /run/hostos/containers/", StringComparison.Ordinal)));
}
