using HostOs.Containers.Spec;
using HostOs.Platform.Interop;

namespace HostOs.Containers.Runtime;

/// <summary>
/// What the stage (src/HostOs.Stage) needs of a validated spec, sent over the control pipe
/// in a plain binary form it only copies from: every name and list resolved here (see
/// <see cref="WriteFramed"/>). The stage never reads a file the container's author controls.
/// </summary>
public sealed record StagePlan
{
    public required string Rootfs { get; init; }
    public string Propagation { get; init; } = "rprivate";
    public bool ReadonlyRoot { get; init; }
    public List<PlannedMount> Mounts { get; init; } = [];
    public List<string> MaskedPaths { get; init; } = [];
    public List<string> ReadonlyPaths { get; init; } = [];
    public string? Hostname { get; init; }
    public string? Domainname { get; init; }
    public bool OwnNetwork { get; init; }
    public bool OwnCgroup { get; init; }
    public List<(string Key, string Value)> Sysctl { get; init; } = [];
    public List<(string Type, ulong Soft, ulong Hard)> Rlimits { get; init; } = [];
    public int? OomScoreAdj { get; init; }
    public required List<string> Args { get; init; }
    public List<string> Env { get; init; } = [];
    public required string Cwd { get; init; }
    public uint Uid { get; init; }
    public uint Gid { get; init; }
    public uint? Umask { get; init; }
    public List<uint> AdditionalGids { get; init; } = [];
    public List<string> Bounding { get; init; } = [];
    public List<string> Effective { get; init; } = [];
    public List<string> Permitted { get; init; } = [];
    public List<string> Inheritable { get; init; } = [];
    public List<string> Ambient { get; init; } = [];
    public bool NoNewPrivileges { get; init; }
    /// <summary>Start comes through exec.fifo in the state directory (fd 5), not the control pipe.</summary>
    public bool StartFifo { get; init; }
    /// <summary>An exec into a running container: join its mount namespace (fd 5), build nothing.</summary>
    public bool Exec { get; init; }

    /// <summary>The compiled seccomp filter (struct sock_filter[]) and its flags; empty: none.</summary>
    public byte[] SeccompFilter { get; init; } = [];
    public uint SeccompFlags { get; init; }
    /// <summary>Prestart/createRuntime/createContainer hooks exist: pause before pivot_root ('H', wait for 'h').</summary>
    public bool PauseForHooks { get; init; }
    /// <summary>startContainer hooks, run by the stage inside the container before the program (their state JSON follows the plan).</summary>
    public List<Hook> StartContainerHooks { get; init; } = [];
    /// <summary>process.terminal: a pty made in the container, its master sent over the console socket at fd ConsoleFd.</summary>
    public bool Terminal { get; init; }
    public int ConsoleFd { get; init; }
    public ushort ConsoleRows { get; init; }
    public ushort ConsoleColumns { get; init; }
    /// <summary>linux.devices: nodes made in the container's /dev (mknod, then mode and owner).</summary>
    public List<PlannedDevice> Devices { get; init; } = [];

    public sealed record PlannedMount(string Destination, string? Source, string? Type, List<string> Options);
    public sealed record PlannedDevice(string Path, char Type, long Major, long Minor, uint FileMode, uint Uid, uint Gid);

    /// <param name="bundle">What a bind mount's relative source is relative to (runtime-spec: the bundle).</param>
    public static StagePlan From(RuntimeSpec spec, string rootfs, string? bundle = null)
    {
        string? SourceOf(Mount m) =>
            bundle is not null && m.Source is { Length: > 0 } source && source[0] != '/' &&
            (m.Type == "bind" || (m.Options ?? []).Any(o => o is "bind" or "rbind"))
                ? Path.Combine(bundle, source) : m.Source;
        bool Own(string type) => spec.Linux?.Namespaces?.Any(n => n.Type == type && n.Path is null) == true;
        return WithSeccomp(ForProcess(spec.Process!, rootfs), spec.Linux?.Seccomp) with
        {
            Propagation = spec.Linux?.RootfsPropagation ?? "rprivate",
            ReadonlyRoot = spec.Root!.Readonly,
            Mounts = (spec.Mounts ?? []).Select(m => new PlannedMount(m.Destination!, SourceOf(m), m.Type, m.Options ?? [])).ToList(),
            MaskedPaths = spec.Linux?.MaskedPaths ?? [],
            ReadonlyPaths = spec.Linux?.ReadonlyPaths ?? [],
            Hostname = spec.Hostname,
            Domainname = spec.Domainname,
            OwnNetwork = Own("network"),
            OwnCgroup = Own("cgroup"),
            Sysctl = (spec.Linux?.Sysctl ?? []).Select(kv => (kv.Key, kv.Value)).ToList(),
            OomScoreAdj = spec.Process!.OomScoreAdj,
            PauseForHooks = spec.Hooks is { } h && (h.Prestart is { Count: > 0 } || h.CreateRuntime is { Count: > 0 } || h.CreateContainer is { Count: > 0 }),
            StartContainerHooks = spec.Hooks?.StartContainer ?? [],
            Devices = (spec.Linux?.Devices ?? []).Select(d => new PlannedDevice(d.Path!, d.Type![0], d.Major, d.Minor,
                d.FileMode ?? 0x1B6 /* 0666 */, d.Uid ?? 0, d.Gid ?? 0)).ToList(),
        };
    }

    /// <summary>The plan of an exec: the process and nothing of the container's set-up.</summary>
    public static StagePlan ForExec(Process process, Spec.Seccomp? seccomp) => WithSeccomp(ForProcess(process, "") with { Exec = true }, seccomp);

    private static StagePlan WithSeccomp(StagePlan plan, Spec.Seccomp? seccomp)
    {
        if (seccomp is null) return plan;
        byte[] filter = Compiled.GetValue(seccomp, static profile => Seccomp.SeccompCompiler.ToBytes(Seccomp.SeccompCompiler.Compile(profile)));
        return plan with { SeccompFilter = filter, SeccompFlags = Seccomp.SeccompCompiler.Flags(seccomp) };
    }

    /// <summary>
    /// Each profile's filter, compiled once per profile object: PID 1's exec health probes
    /// run every 2 s into a container whose spec (and so profile) stays the same object.
    /// A profile is not changed once its spec is loaded. Weak keys: a deleted container's
    /// profile takes its filter with it.
    /// </summary>
    private static readonly System.Runtime.CompilerServices.ConditionalWeakTable<Spec.Seccomp, byte[]> Compiled = new();

    private static StagePlan ForProcess(Process p, string rootfs) => new()
    {
        Rootfs = rootfs,
        Terminal = p.Terminal,
        ConsoleRows = (ushort)Math.Min(p.ConsoleSize?.Height ?? 0, ushort.MaxValue),
        ConsoleColumns = (ushort)Math.Min(p.ConsoleSize?.Width ?? 0, ushort.MaxValue),
        Rlimits = (p.Rlimits ?? []).Select(r => (r.Type!, r.Soft, r.Hard)).ToList(),
        Args = p.Args!,
        Env = p.Env ?? [],
        Cwd = p.Cwd!,
        Uid = p.User?.Uid ?? 0,
        Gid = p.User?.Gid ?? 0,
        Umask = p.User?.Umask,
        AdditionalGids = p.User?.AdditionalGids ?? [],
        Bounding = p.Capabilities?.Bounding ?? [],
        Effective = p.Capabilities?.Effective ?? [],
        Permitted = p.Capabilities?.Permitted ?? [],
        Inheritable = p.Capabilities?.Inheritable ?? [],
        Ambient = p.Capabilities?.Ambient ?? [],
        NoNewPrivileges = p.NoNewPrivileges,
    };

    /// <summary>
    /// The plan as the stage reads it (src/HostOs.Stage/Stage.cs, same order), framed (a
    /// 4-byte length first): little-endian numbers, strings as a length, the UTF-8 bytes and
    /// a NUL, and all that needs names or lists resolved here (capability masks, rlimit
    /// numbers, mount options, device types, sysctl paths, the ambient set the kernel can
    /// raise, the PATH to search), so the stage only copies. With startContainer hooks, the
    /// state JSON they get follows, framed too (<see cref="WriteFramedState"/>): it names the
    /// stage's pid, known only once the stage runs.
    /// </summary>
    public void WriteFramed(Stream stream)
    {
        Framed(stream, buffer =>
        {
            using var w = new BinaryWriter(buffer, System.Text.Encoding.UTF8, leaveOpen: true);
            w.Write(NativePlanVersion);
            w.Write((NoNewPrivileges ? 1u : 0) | (Umask.HasValue ? 2u : 0) | (Exec ? 4u : 0) | (StartFifo ? 8u : 0) | (OwnCgroup ? 16u : 0)
                | (ReadonlyRoot ? 32u : 0) | (OwnNetwork ? 64u : 0) | (PauseForHooks ? 128u : 0) | (Terminal ? 256u : 0));
            w.Write(Umask ?? 0); w.Write(Uid); w.Write(Gid); w.Write((uint)Sys.LastCapability);
            // The kernel raises an ambient capability only if it is permitted and inheritable;
            // runc skips the others with a warning (its default spec lists some), and so do we.
            List<string> ambient = [.. Ambient.Where(a => Permitted.Contains(a) && Inheritable.Contains(a))];
            foreach (List<string> set in new[] { Bounding, Effective, Permitted, Inheritable, ambient }) w.Write(CapabilityMask(set));
            w.Write(AdditionalGids.Count);
            foreach (uint g in AdditionalGids) w.Write(g);
            w.Write(Rlimits.Count);
            foreach (var (type, soft, hard) in Rlimits) { w.Write((uint)RlimitNumber(type)); w.Write(soft); w.Write(hard); NativeString(w, type); }
            w.Write(SeccompFlags); w.Write(SeccompFilter.Length); w.Write(SeccompFilter);
            NativeString(w, Cwd);
            NativeStrings(w, Args);
            NativeStrings(w, Env);
            NativeString(w, SearchPath(Env));
            w.Write(Terminal ? (uint)ConsoleFd : 0); w.Write((uint)ConsoleRows); w.Write((uint)ConsoleColumns);
            if (StartContainerHooks.Count > MaxHooks) throw new InvalidDataException($"{StartContainerHooks.Count} startContainer hooks: at most {MaxHooks}");
            w.Write(StartContainerHooks.Count);
            foreach (Hook h in StartContainerHooks)
            {
                NativeString(w, h.Path!);
                NativeStrings(w, h.Args is { Count: > 0 } a ? a : [h.Path!]);
                NativeStrings(w, h.Env ?? []);
                w.Write((uint)(h.Timeout ?? 0));
            }
            if (!Exec) WriteNativeCreate(w);
        });
    }

    /// <summary>The startContainer hooks' state JSON, framed, sent right after the plan.</summary>
    public static void WriteFramedState(Stream stream, string stateJson) =>
        Framed(stream, buffer => buffer.Write(System.Text.Encoding.UTF8.GetBytes(stateJson)));

    private void WriteNativeCreate(BinaryWriter w)
    {
        NativeString(w, Rootfs);
        w.Write((ulong)MountOptions.Parse([Propagation]).Propagation);
        w.Write(Mounts.Count);
        foreach (PlannedMount m in Mounts)
        {
            MountOptions o = MountOptions.Parse(m.Options);
            // "cgroup" in a spec means the container's view of the hierarchy; this host is v2.
            string type = m.Type is null or "bind" ? "bind" : m.Type == "cgroup" ? "cgroup2" : m.Type;
            NativeString(w, m.Destination);
            NativeString(w, o.Bind ? m.Source ?? "" : m.Source ?? type);
            NativeString(w, o.Bind ? "" : type);
            // A bind mount's flags are applied by a remount after it (mount(2) ignores them
            // on the bind itself); any other type's go with the mount.
            w.Write((ulong)o.Flags);
            NativeString(w, o.Data ?? "");
            w.Write((o.Bind ? 1u : 0) | (o.Recursive ? 2u : 0));
            w.Write((ulong)o.Propagation);
        }
        bool ownDev = Mounts.Any(m => m.Destination == "/dev");
        NativeStrings(w, ownDev ? [.. DefaultDevices.Where(d => !Devices.Any(l => l.Path == "/dev/" + d))] : []);
        w.Write(ownDev ? DeviceLinks.Length : 0);
        foreach (var (link, to) in ownDev ? DeviceLinks : []) { NativeString(w, link); NativeString(w, to); }
        w.Write(Devices.Count);
        foreach (PlannedDevice d in Devices)
        {
            NativeString(w, d.Path);
            w.Write(DeviceType(d) | (d.FileMode & 0xFFF));
            w.Write((uint)d.Major); w.Write((uint)d.Minor); w.Write(d.Uid); w.Write(d.Gid);
        }
        NativeStrings(w, MaskedPaths);
        NativeStrings(w, ReadonlyPaths);
        NativeString(w, Hostname ?? "");
        NativeString(w, Domainname ?? "");
        w.Write(Sysctl.Count);
        foreach (var (key, value) in Sysctl) { NativeString(w, "/proc/sys/" + key.Replace('.', '/')); NativeString(w, value); }
        NativeString(w, OomScoreAdj?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "");
    }

    private const uint NativePlanVersion = 3;
    /// <summary>As many startContainer hooks as the stage takes (src/HostOs.Stage/Stage.cs, MaxHooks).</summary>
    private const int MaxHooks = 1024;

    /// <summary>/dev/null, zero, full, random, urandom, tty bound from the host, and the usual links, when /dev is the spec's.</summary>
    private static readonly string[] DefaultDevices = ["null", "zero", "full", "random", "urandom", "tty"];
    private static readonly (string Link, string To)[] DeviceLinks =
        [("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"), ("ptmx", "pts/ptmx")];

    private static uint DeviceType(PlannedDevice d) => d.Type switch
    {
        'c' or 'u' => Sys.S_IFCHR, 'b' => Sys.S_IFBLK, 'p' => Sys.S_IFIFO,
        _ => throw new InvalidDataException($"device {d.Path}: type '{d.Type}'"),
    };

    private static void NativeString(BinaryWriter w, string s)
    {
        byte[] bytes = System.Text.Encoding.UTF8.GetBytes(s);
        if (bytes.Contains((byte)0)) throw new InvalidDataException($"a NUL character in '{s.Replace("\0", "\\0", StringComparison.Ordinal)}'");
        w.Write(bytes.Length); w.Write(bytes); w.Write((byte)0);
    }

    private static void NativeStrings(BinaryWriter w, List<string> list)
    {
        w.Write(list.Count);
        foreach (string s in list) NativeString(w, s);
    }

    private static void Framed(Stream stream, Action<Stream> write)
    {
        var buffer = new MemoryStream();
        write(buffer);
        stream.Write(BitConverter.GetBytes((int)buffer.Length));
        stream.Write(buffer.GetBuffer(), 0, (int)buffer.Length);
    }

    /// <summary>The container's PATH, as execvp would search it (the default when the environment has none).</summary>
    internal static string SearchPath(List<string> env) =>
        env.FirstOrDefault(e => e.StartsWith("PATH=", StringComparison.Ordinal))?[5..] ?? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

    internal static ulong CapabilityMask(List<string> names) => names.Aggregate(0UL, (m, n) => m | (1UL << CapabilityNumber(n)));

    internal static int CapabilityNumber(string name)
    {
        int n = 0;
        foreach (string c in SpecValidator.CapabilityNames)
        {
            if (c == name) return n;
            n++;
        }
        throw new InvalidDataException($"'{name}' is not a capability");
    }

    internal static int RlimitNumber(string type) => type switch
    {
        "RLIMIT_CPU" => 0, "RLIMIT_FSIZE" => 1, "RLIMIT_DATA" => 2, "RLIMIT_STACK" => 3, "RLIMIT_CORE" => 4,
        "RLIMIT_RSS" => 5, "RLIMIT_NPROC" => 6, "RLIMIT_NOFILE" => 7, "RLIMIT_MEMLOCK" => 8, "RLIMIT_AS" => 9,
        "RLIMIT_LOCKS" => 10, "RLIMIT_SIGPENDING" => 11, "RLIMIT_MSGQUEUE" => 12, "RLIMIT_NICE" => 13,
        "RLIMIT_RTPRIO" => 14, "RLIMIT_RTTIME" => 15,
        _ => throw new InvalidDataException($"{type} is not an RLIMIT_ name"),
    };
}
