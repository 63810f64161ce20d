using System.Text.Json;


namespace HostOs.Containers.Spec;

/// <summary>
/// Everything that would make a spec fail, or harm the host, found before anything is
/// created: every problem at once, each at its JSON path. Fields of the spec that HostOS
/// does not implement are reported as such, never silently ignored.
/// </summary>
public static partial class SpecValidator
{
    // Arrays searched in order, not hash sets: a set is built, and its names hashed, by the
    // first container of every process (docs/containers.md "Counting instead of timing").
    private static readonly string[] NamespaceTypes = ["pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time"];

    // linux/capability.h, CAP_CHOWN (0) .. CAP_CHECKPOINT_RESTORE (40).
    public static readonly IReadOnlyList<string> CapabilityNames =
    [
        "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
        "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
        "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
        "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT",
        "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
        "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
        "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
        "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
    ];

    private static readonly string[] RlimitTypes =
    [
        "RLIMIT_AS", "RLIMIT_CORE", "RLIMIT_CPU", "RLIMIT_DATA", "RLIMIT_FSIZE", "RLIMIT_LOCKS",
        "RLIMIT_MEMLOCK", "RLIMIT_MSGQUEUE", "RLIMIT_NICE", "RLIMIT_NOFILE", "RLIMIT_NPROC",
        "RLIMIT_RSS", "RLIMIT_RTPRIO", "RLIMIT_RTTIME", "RLIMIT_SIGPENDING", "RLIMIT_STACK",
    ];

    private static readonly string[] MountTypes =
        ["bind", "none", "tmpfs", "proc", "sysfs", "devpts", "mqueue", "cgroup", "cgroup2", "overlay"];

    private static readonly string[] Propagations =
        ["private", "rprivate", "slave", "rslave", "shared", "rshared", "unbindable", "runbindable"];

    private static readonly string[] SeccompActions =
    [
        "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP",
        "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW", "SCMP_ACT_LOG",
    ];

    private static readonly string[] SeccompOps =
        ["SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ"];

    private static readonly string[] SeccompArchitectures = ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"];

    private static readonly string[] SeccompFlags =
        ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"];

    /// <summary>
    /// ^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$ : "0-3,5". Written out rather than a Regex:
    /// this validator runs inside PID 1, where the regex engine would cost ~1 MB.
    /// </summary>
    internal static bool IsCpuList(string text)
    {
        foreach (string item in text.Split(','))
        {
            string[] range = item.Split('-');
            if (range.Length > 2 || range.Any(n => n.Length == 0 || !n.All(char.IsAsciiDigit))) return false;
        }
        return true;
    }

    public static List<string> Validate(RuntimeSpec spec)
    {
        var p = new List<string>();
        void Unsupported(bool present, string path) { if (present) p.Add($"{path}: not supported by HostOS"); }
        bool Absolute(string? path) => path is not null && path.StartsWith('/');

        if (string.IsNullOrEmpty(spec.OciVersion)) p.Add("$.ociVersion: required");
        else if (!spec.OciVersion.StartsWith("1.", StringComparison.Ordinal)) p.Add($"$.ociVersion: '{spec.OciVersion}' is not a 1.x runtime spec");
        if (string.IsNullOrEmpty(spec.Root?.Path)) p.Add("$.root.path: required");

        foreach (var (present, name) in new[] { (spec.Windows, "windows"), (spec.Solaris, "solaris"), (spec.Vm, "vm"), (spec.Zos, "zos"), (spec.Freebsd, "freebsd") })
        {
            if (present is not null) p.Add($"$.{name}: a section for another platform; HostOS runs Linux containers");
        }

        ValidateProcess(spec.Process, p, Unsupported);
        var ns = ValidateNamespaces(spec.Linux, p);
        if (spec.Hostname is { Length: > 0 } && !ns.Own("uts")) p.Add("$.hostname: setting a hostname needs a private uts namespace");
        if (spec.Domainname is { Length: > 0 } && !ns.Own("uts")) p.Add("$.domainname: setting a domain name needs a private uts namespace");

        for (int i = 0; i < (spec.Mounts?.Count ?? 0); i++)
        {
            Mount m = spec.Mounts![i];
            string at = "$.mounts[" + i.ToString() + "]";
            if (!Absolute(m.Destination)) p.Add($"{at}.destination: '{m.Destination}' must be an absolute path");
            else if (m.Destination!.Split('/').Contains("..")) p.Add($"{at}.destination: '{m.Destination}' must not contain '..'");
            bool bind = m.Options?.Any(o => o is "bind" or "rbind") == true || m.Type == "bind";
            string type = m.Type ?? (bind ? "bind" : "");
            if (!bind && !MountTypes.Contains(type)) p.Add($"{at}.type: '{m.Type}' is not a supported file system type ({string.Join(", ", MountTypes.Order())})");
            if (bind && string.IsNullOrEmpty(m.Source)) p.Add($"{at}.source: a bind mount needs a source");
            Unsupported(m.UidMappings is not null || m.GidMappings is not null, $"{at}.uidMappings/gidMappings (id-mapped mounts)");
        }

        if (spec.Hooks is { } hooks)
        {
            foreach (var (list, name) in new[] { (hooks.Prestart, "prestart"), (hooks.CreateRuntime, "createRuntime"), (hooks.CreateContainer, "createContainer"), (hooks.StartContainer, "startContainer"), (hooks.Poststart, "poststart"), (hooks.Poststop, "poststop") })
            {
                for (int i = 0; i < (list?.Count ?? 0); i++)
                {
                    if (!Absolute(list![i].Path)) p.Add($"$.hooks.{name}[{i}].path: '{list[i].Path}' must be an absolute path");
                    if (list[i].Timeout is <= 0) p.Add($"$.hooks.{name}[{i}].timeout: must be positive");
                }
            }
        }

        if (spec.Linux is { } linux) ValidateLinux(linux, ns, p, Unsupported);
        return p;
    }

    /// <summary>A process section on its own (exec --process FILE), with the same rules.</summary>
    public static List<string> ValidateProcess(Process process)
    {
        var p = new List<string>();
        ValidateProcess(process, p, (present, path) => { if (present) p.Add($"{path}: not supported by HostOS"); });
        return p;
    }

    private static void ValidateProcess(Process? process, List<string> p, Action<bool, string> unsupported)
    {
        if (process is null) return; // only needed to create; checked there
        if (process.Args is null || process.Args.Count == 0) p.Add("$.process.args: at least the program to run");
        if (process.Cwd is null || !process.Cwd.StartsWith('/')) p.Add($"$.process.cwd: '{process.Cwd}' must be an absolute path");
        for (int i = 0; i < (process.Env?.Count ?? 0); i++)
        {
            if (process.Env![i].IndexOf('=') <= 0) p.Add($"$.process.env[{i}]: '{process.Env[i]}' is not NAME=value");
        }
        if (process.ConsoleSize is not null && !process.Terminal) p.Add("$.process.consoleSize: only with terminal: true");
        unsupported(process.CommandLine is not null, "$.process.commandLine (Windows)");
        unsupported(!string.IsNullOrEmpty(process.ApparmorProfile), "$.process.apparmorProfile");
        unsupported(!string.IsNullOrEmpty(process.SelinuxLabel), "$.process.selinuxLabel");
        unsupported(process.IoPriority is not null, "$.process.ioPriority");
        unsupported(process.Scheduler is not null, "$.process.scheduler");
        unsupported(process.ExecCPUAffinity is not null, "$.process.execCPUAffinity");
        if (process.OomScoreAdj is < -1000 or > 1000) p.Add($"$.process.oomScoreAdj: {process.OomScoreAdj} is outside -1000..1000");
        if (process.User?.Umask is > 0x1FF) p.Add($"$.process.user.umask: {process.User.Umask} is not a mode");
        unsupported(process.User?.Username is not null, "$.process.user.username (Windows)");

        int seen = 0; // a bit per RlimitTypes entry
        for (int i = 0; i < (process.Rlimits?.Count ?? 0); i++)
        {
            Rlimit r = process.Rlimits![i];
            int type = r.Type is null ? -1 : Array.IndexOf(RlimitTypes, r.Type);
            if (type < 0) p.Add($"$.process.rlimits[{i}].type: '{r.Type}' is not an RLIMIT_ name");
            else if ((seen & (1 << type)) != 0) p.Add($"$.process.rlimits[{i}].type: {r.Type} is set twice");
            seen |= 1 << type;
            if (r.Soft > r.Hard) p.Add($"$.process.rlimits[{i}]: soft {r.Soft} is above hard {r.Hard}");
        }
        if (process.Capabilities is { } caps)
        {
            foreach (var (set, name) in new[] { (caps.Bounding, "bounding"), (caps.Effective, "effective"), (caps.Inheritable, "inheritable"), (caps.Permitted, "permitted"), (caps.Ambient, "ambient") })
            {
                foreach (string c in set ?? [])
                {
                    if (!CapabilityNames.Contains(c)) p.Add($"$.process.capabilities.{name}: '{c}' is not a capability");
                }
            }
        }
    }

    internal sealed record NamespacePlan(Dictionary<string, string?> Types)
    {
        /// <summary>A namespace of its own (not joined by path, not the host's).</summary>
        public bool Own(string type) => Types.TryGetValue(type, out string? path) && path is null;
        public bool Has(string type) => Types.ContainsKey(type);
    }

    private static NamespacePlan ValidateNamespaces(LinuxSpec? linux, List<string> p)
    {
        var types = new Dictionary<string, string?>();
        for (int i = 0; i < (linux?.Namespaces?.Count ?? 0); i++)
        {
            Namespace n = linux!.Namespaces![i];
            string at = "$.linux.namespaces[" + i.ToString() + "]";
            if (n.Type is null || !NamespaceTypes.Contains(n.Type)) { p.Add($"{at}.type: '{n.Type}' is not a namespace type ({string.Join(", ", NamespaceTypes.Order())})"); continue; }
            if (!types.TryAdd(n.Type, n.Path)) p.Add($"{at}.type: {n.Type} is listed twice");
            if (n.Path is not null && !n.Path.StartsWith('/')) p.Add($"{at}.path: '{n.Path}' must be an absolute path");
        }
        var plan = new NamespacePlan(types);
        // A .NET process is never single-threaded, which entering a user namespace needs
        // (docs/containers.md). Refused by name until HostOS has a scheme for it.
        if (plan.Has("user")) p.Add("$.linux.namespaces: user namespaces are not supported by HostOS yet");
        bool mappings = linux?.UidMappings is { Count: > 0 } || linux?.GidMappings is { Count: > 0 };
        if (plan.Own("user") && (linux?.UidMappings is not { Count: > 0 } || linux.GidMappings is not { Count: > 0 }))
        {
            p.Add("$.linux.uidMappings/gidMappings: a new user namespace needs both mappings");
        }
        if (mappings && !plan.Own("user")) p.Add("$.linux.uidMappings/gidMappings: mappings need a new user namespace");
        return plan;
    }

    private static void ValidateLinux(LinuxSpec linux, NamespacePlan ns, List<string> p, Action<bool, string> unsupported)
    {
        unsupported(linux.TimeOffsets is not null, "$.linux.timeOffsets");
        unsupported(linux.IntelRdt is not null, "$.linux.intelRdt");
        unsupported(!string.IsNullOrEmpty(linux.MountLabel), "$.linux.mountLabel");
        unsupported(linux.Personality is not null, "$.linux.personality");
        unsupported(linux.MemoryPolicy is not null, "$.linux.memoryPolicy");
        unsupported(linux.NetDevices is not null, "$.linux.netDevices");
        if (linux.CgroupsPath is { } cg && cg.Contains(':')) p.Add($"$.linux.cgroupsPath: '{cg}' is a systemd slice path; HostOS has no systemd");
        if (linux.CgroupsPath is { } cg2 && cg2.Split('/').Contains("..")) p.Add($"$.linux.cgroupsPath: '{cg2}' must not contain '..'");
        if (linux.CgroupsPath is { } cg3 && cg3.Split('/', StringSplitOptions.RemoveEmptyEntries).All(part => part == ".")) p.Add($"$.linux.cgroupsPath: '{cg3}' names the root cgroup; a container needs one of its own");
        if (linux.RootfsPropagation is { } prop && !Propagations.Contains(prop)) p.Add($"$.linux.rootfsPropagation: '{prop}' is not a propagation type");
        foreach (var (list, name) in new[] { (linux.MaskedPaths, "maskedPaths"), (linux.ReadonlyPaths, "readonlyPaths") })
        {
            for (int i = 0; i < (list?.Count ?? 0); i++)
            {
                if (!list![i].StartsWith('/')) p.Add($"$.linux.{name}[{i}]: '{list[i]}' must be an absolute path");
            }
        }
        for (int i = 0; i < (linux.Devices?.Count ?? 0); i++)
        {
            Device d = linux.Devices![i];
            string at = "$.linux.devices[" + i.ToString() + "]";
            if (d.Type is not ("c" or "b" or "u" or "p")) p.Add($"{at}.type: '{d.Type}' is not c, b, u or p");
            if (d.Path is null || !d.Path.StartsWith("/dev/", StringComparison.Ordinal) || d.Path.Split('/').Contains(".."))
            {
                p.Add($"{at}.path: '{d.Path}' must be a path under /dev");
            }
        }
        foreach (var (key, _) in linux.Sysctl ?? [])
        {
            string? why = SysctlProblem(key, ns);
            if (why is not null) p.Add($"$.linux.sysctl.{key}: {why}");
        }
        if (linux.Resources is { } r) ValidateResources(r, p, unsupported);
        if (linux.Seccomp is { } s) ValidateSeccomp(s, p, unsupported);
    }

    /// <summary>
    /// Only namespaced sysctls may be set, and only in a namespace of the container's own:
    /// anything else would change the host (runc's rule, from the kernel's namespacing).
    /// </summary>
    internal static string? SysctlProblem(string key, NamespacePlan ns)
    {
        bool ipc = key is "kernel.msgmax" or "kernel.msgmnb" or "kernel.msgmni" or "kernel.sem" or "kernel.shmall"
                   or "kernel.shmmax" or "kernel.shmmni" or "kernel.shm_rmid_forced" || key.StartsWith("fs.mqueue.", StringComparison.Ordinal);
        if (ipc) return ns.Own("ipc") ? null : "an ipc sysctl needs a private ipc namespace";
        if (key.StartsWith("net.", StringComparison.Ordinal)) return ns.Own("network") ? null : "a net sysctl needs a private network namespace";
        if (key is "kernel.hostname" or "kernel.domainname") return "set hostname/domainname with $.hostname/$.domainname";
        return "not a namespaced sysctl: it would change the host";
    }

    private static void ValidateResources(Resources r, List<string> p, Action<bool, string> unsupported)
    {
        const string at = "$.linux.resources";
        unsupported(r.Network is not null, $"{at}.network (cgroup v1 only)");
        unsupported(r.Rdma is not null, $"{at}.rdma");
        if (r.Memory is { } m)
        {
            if (m.Limit is < -1 or 0) p.Add($"{at}.memory.limit: {m.Limit} (bytes, or -1 for no limit)");
            if (m.Swap is < -1) p.Add($"{at}.memory.swap: {m.Swap} (bytes of memory+swap, or -1)");
            if (m.Swap is > 0 && m.Limit is > 0 && m.Swap < m.Limit) p.Add($"{at}.memory.swap: {m.Swap} is memory+swap and must not be below memory.limit {m.Limit}");
            if (m.Swap is > 0 && m.Limit is null or -1) p.Add($"{at}.memory.swap: a swap limit needs a memory.limit");
            unsupported(m.Kernel is not null, $"{at}.memory.kernel (cgroup v1 only)");
            unsupported(m.KernelTcp is not null, $"{at}.memory.kernelTCP (cgroup v1 only)");
            unsupported(m.Swappiness is not null and not 0, $"{at}.memory.swappiness (cgroup v1 only)");
            unsupported(m.DisableOomKiller == true, $"{at}.memory.disableOOMKiller (cgroup v1 only)");
        }
        if (r.Cpu is { } c)
        {
            if (c.Shares is { } shares && (shares < 2 || shares > 262144)) p.Add($"{at}.cpu.shares: {shares} is outside 2..262144");
            if (c.Period is { } period && (period < 1000 || period > 1_000_000)) p.Add($"{at}.cpu.period: {period} µs is outside 1000..1000000");
            if (c.Quota is { } quota && quota is 0 or < -1) p.Add($"{at}.cpu.quota: {quota} µs (positive, or -1 for no limit)");
            if (c.Quota is > 0 and < 1000) p.Add($"{at}.cpu.quota: {c.Quota} µs is below the kernel's 1000 µs minimum");
            if (c.Cpus is { Length: > 0 } cpus && !IsCpuList(cpus)) p.Add($"{at}.cpu.cpus: '{cpus}' is not a CPU list like 0-3,5");
            if (c.Mems is { Length: > 0 } mems && !IsCpuList(mems)) p.Add($"{at}.cpu.mems: '{mems}' is not a node list like 0-1");
            unsupported(c.RealtimeRuntime is not null || c.RealtimePeriod is not null, $"{at}.cpu.realtimeRuntime/realtimePeriod (cgroup v1 only)");
            if (c.Idle is not (null or 0 or 1)) p.Add($"{at}.cpu.idle: {c.Idle} (0 or 1)");
        }
        if (r.BlockIO is { } b)
        {
            if (b.Weight is { } w && (w < 10 || w > 1000)) p.Add($"{at}.blockIO.weight: {w} is outside 10..1000");
            unsupported(b.LeafWeight is not null || b.WeightDevice?.Any(d => d.LeafWeight is not null) == true, $"{at}.blockIO.leafWeight (cgroup v1 only)");
            for (int i = 0; i < (b.WeightDevice?.Count ?? 0); i++)
            {
                if (b.WeightDevice![i].Weight is { } dw && (dw < 10 || dw > 1000)) p.Add($"{at}.blockIO.weightDevice[{i}].weight: {dw} is outside 10..1000");
            }
        }
        foreach (var (key, _) in r.Unified ?? [])
        {
            if (key.Contains('/') || key.StartsWith('.') || key.StartsWith("cgroup.", StringComparison.Ordinal) || !key.Contains('.'))
            {
                p.Add($"$.linux.resources.unified.{key}: not a controller file this runtime lets a spec write");
            }
        }
        for (int i = 0; i < (r.HugepageLimits?.Count ?? 0); i++)
        {
            if (r.HugepageLimits![i].PageSize is not ("2MB" or "1GB")) p.Add($"{at}.hugepageLimits[{i}].pageSize: '{r.HugepageLimits[i].PageSize}' is not 2MB or 1GB");
        }
        for (int i = 0; i < (r.Devices?.Count ?? 0); i++)
        {
            DeviceRule d = r.Devices![i];
            if (d.Type is not (null or "a" or "c" or "b")) p.Add($"{at}.devices[{i}].type: '{d.Type}' is not a, c or b");
            if (d.Access is { } acc && (acc.Length == 0 || acc.Any(ch => ch is not ('r' or 'w' or 'm')))) p.Add($"{at}.devices[{i}].access: '{acc}' is not made of r, w, m");
        }
    }

    private static void ValidateSeccomp(Seccomp s, List<string> p, Action<bool, string> unsupported)
    {
        const string at = "$.linux.seccomp";
        if (s.DefaultAction is null || !SeccompActions.Contains(s.DefaultAction)) p.Add($"{at}.defaultAction: '{s.DefaultAction}' is not a supported action");
        foreach (string a in s.Architectures ?? [])
        {
            if (!SeccompArchitectures.Contains(a)) p.Add($"{at}.architectures: '{a}' cannot run on this x86-64 machine");
        }
        foreach (string f in s.Flags ?? [])
        {
            if (!SeccompFlags.Contains(f)) p.Add($"{at}.flags: '{f}' is not a seccomp filter flag");
        }
        unsupported(s.ListenerPath is not null, $"{at}.listenerPath (SCMP_ACT_NOTIFY)");
        for (int i = 0; i < (s.Syscalls?.Count ?? 0); i++)
        {
            SeccompSyscall sc = s.Syscalls![i];
            if (sc.Names is not { Count: > 0 }) p.Add($"{at}.syscalls[{i}].names: at least one syscall name");
            if (sc.Action is null || !SeccompActions.Contains(sc.Action)) p.Add($"{at}.syscalls[{i}].action: '{sc.Action}' is not a supported action");
            for (int j = 0; j < (sc.Args?.Count ?? 0); j++)
            {
                if (sc.Args![j].Index > 5) p.Add($"{at}.syscalls[{i}].args[{j}].index: {sc.Args[j].Index} (a syscall has 6 arguments, 0..5)");
                if (sc.Args[j].Op is null || !SeccompOps.Contains(sc.Args[j].Op!)) p.Add($"{at}.syscalls[{i}].args[{j}].op: '{sc.Args[j].Op}' is not a comparison");
            }
        }
    }
}
