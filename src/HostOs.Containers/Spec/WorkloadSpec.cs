using HostOs.Platform.Config;

namespace HostOs.Containers.Spec;

/// <summary>An image's run defaults (the OCI image config's "config" object).</summary>
public sealed record ImageDefaults(List<string>? Entrypoint, List<string>? Cmd, List<string> Env, string? WorkingDir, string? User)
{
    public static ImageDefaults Of(BakedImage image) => new(image.Entrypoint, image.Cmd, image.Env, image.WorkingDir, image.User);
}

/// <summary>
/// The runtime spec of a HostOS workload container (system or app): Docker's defaults,
/// which operators know (the image's entrypoint, command, env, working directory and user
/// unless overridden; Docker's fourteen default capabilities; proc, dev, devpts, shm,
/// mqueue, read-only sysfs and cgroup; the usual masked and read-only /proc paths; all
/// devices denied but the standard nodes), with what the definition asks for on top.
/// </summary>
public static class WorkloadSpec
{
    /// <summary>Docker's default capability set (moby oci/caps/defaults.go).</summary>
    public static readonly IReadOnlyList<string> DefaultCapabilities =
    [
        "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
        "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
    ];

    public const string DefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

    /// <summary>The spec; <paramref name="cgroupsPath"/> is relative to the cgroup root. Throws <see cref="SpecException"/> naming what is wrong.</summary>
    public static RuntimeSpec Build(ContainerDefinition def, ImageDefaults image, string cgroupsPath, IReadOnlyList<string>? extraEnv = null, IReadOnlyList<BindMount>? volumes = null)
    {
        string where = $"container '{def.Name}'";
        List<string> args = def.Entrypoint is not null
            ? [.. def.Entrypoint, .. def.Command ?? []]
            : [.. image.Entrypoint ?? [], .. def.Command ?? image.Cmd ?? []];
        if (args.Count == 0) throw new SpecException(where, ["no command: the image has no Entrypoint or Cmd and the definition gives none"]);

        string? userText = def.User ?? image.User;
        (uint Uid, uint Gid) user = (0, 0);
        if (!string.IsNullOrEmpty(userText))
        {
            user = ContainerDefinition.ParseUser(userText)
                ?? throw new SpecException(where, [$"user '{userText}' is not numeric UID or UID:GID (user names are not looked up)"]);
        }

        List<string> caps = [.. def.Capabilities ?? DefaultCapabilities];
        RuntimeSpec spec = DefaultSpec.Create();
        spec.Process = new Process
        {
            Terminal = false,
            Args = args,
            Env = MergeEnv(image.Env, def.Env, extraEnv ?? []),
            Cwd = def.WorkingDir ?? image.WorkingDir ?? "/",
            User = new User { Uid = user.Uid, Gid = user.Gid },
            Capabilities = new Capabilities
            {
                Bounding = [.. caps], Effective = [.. caps], Permitted = [.. caps],
                // As Docker: a root process gets them all, another user none that are ambient.
                Inheritable = [], Ambient = [],
            },
            Rlimits = [new Rlimit { Type = "RLIMIT_NOFILE", Hard = 1048576, Soft = 1048576 }],
            NoNewPrivileges = false,
        };
        spec.Root = new Root { Path = "rootfs", Readonly = def.ReadonlyRootfs };
        bool hostNetwork = def.Network == ContainerNetwork.Host;
        spec.Hostname = hostNetwork ? null : def.Hostname ?? def.Name;
        foreach (BindMount b in def.Binds.Concat(volumes ?? []))
        {
            spec.Mounts!.Add(new Mount
            {
                Destination = b.Target, Type = "bind", Source = b.Source,
                Options = ["rbind", "rprivate", "nosuid", "nodev", b.Readonly ? "ro" : "rw"],
            });
        }
        foreach (string t in def.Tmpfs)
        {
            spec.Mounts!.Add(new Mount { Destination = t, Type = "tmpfs", Source = "tmpfs", Options = ["nosuid", "nodev", "mode=1777"] });
        }
        LinuxSpec linux = spec.Linux!;
        linux.CgroupsPath = cgroupsPath;
        linux.Namespaces = [new() { Type = "pid" }, new() { Type = "ipc" }, new() { Type = "mount" }, new() { Type = "cgroup" }];
        if (!hostNetwork) linux.Namespaces.AddRange([new() { Type = "network" }, new() { Type = "uts" }]);
        if (def.Resources is ContainerResources r)
        {
            Resources res = linux.Resources!;
            if (r.MemoryMiB is long mib) res.Memory = new Memory { Limit = mib << 20 };
            if (r.Cpus is double cpus) res.Cpu = new Cpu { Period = 100_000, Quota = (long)Math.Round(cpus * 100_000, MidpointRounding.AwayFromZero) };
            if (r.Pids is long pids) res.Pids = new Pids { Limit = pids };
        }
        return spec;
    }

    /// <summary>The image's environment, then the definition's and the extras, a later NAME replacing an earlier; PATH always set.</summary>
    public static List<string> MergeEnv(IEnumerable<string> image, IEnumerable<string> definition, IEnumerable<string> extra)
    {
        var result = new List<string>();
        foreach (string e in image.Concat(definition).Concat(extra))
        {
            int eq = e.IndexOf('=');
            string name = eq < 0 ? e : e[..eq];
            int at = result.FindIndex(x => x.StartsWith(name + "=", StringComparison.Ordinal));
            if (at >= 0) result[at] = e;
            else result.Add(e);
        }
        if (!result.Any(e => e.StartsWith("PATH=", StringComparison.Ordinal))) result.Insert(0, DefaultPath);
        return result;
    }
}
