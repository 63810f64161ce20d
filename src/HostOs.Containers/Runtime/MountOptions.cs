using HostOs.Platform.Interop;

namespace HostOs.Containers.Runtime;

/// <summary>
/// An OCI mount's "options" split the way mount(8) does: flags for mount(2), a
/// propagation change (a separate mount(2) call), and the rest as the file system's data
/// string ("mode=755,size=65536k"). A pure value, tested without mounting anything.
/// </summary>
public sealed record MountOptions(MountFlags Flags, MountFlags ClearedFlags, MountFlags Propagation, bool Bind, bool Recursive, string? Data)
{
    // Switches rather than dictionaries: a static table is built in full by the first
    // container of every process; a switch runs only the names a spec has
    // (docs/containers.md "Counting instead of timing").
    private static (MountFlags Set, MountFlags Clear)? FlagOf(string name) => name switch
    {
        "ro" => (MountFlags.ReadOnly, 0), "rw" => (0, MountFlags.ReadOnly),
        "nosuid" => (MountFlags.NoSuid, 0), "suid" => (0, MountFlags.NoSuid),
        "nodev" => (MountFlags.NoDev, 0), "dev" => (0, MountFlags.NoDev),
        "noexec" => (MountFlags.NoExec, 0), "exec" => (0, MountFlags.NoExec),
        "sync" => (MountFlags.Synchronous, 0), "async" => (0, MountFlags.Synchronous),
        "dirsync" => (MountFlags.DirSync, 0), "mand" => (MountFlags.MandLock, 0), "nomand" => (0, MountFlags.MandLock),
        "noatime" => (MountFlags.NoAtime, 0), "atime" => (0, MountFlags.NoAtime),
        "nodiratime" => (MountFlags.NoDirAtime, 0), "diratime" => (0, MountFlags.NoDirAtime),
        "relatime" => (MountFlags.RelAtime, 0), "norelatime" => (0, MountFlags.RelAtime),
        "strictatime" => (MountFlags.StrictAtime, 0), "nostrictatime" => (0, MountFlags.StrictAtime),
        _ => null,
    };

    private static MountFlags? PropagationOf(string name) => name switch
    {
        "private" => MountFlags.Private, "rprivate" => MountFlags.Private | MountFlags.Recursive,
        "shared" => MountFlags.Shared, "rshared" => MountFlags.Shared | MountFlags.Recursive,
        "slave" => MountFlags.Slave, "rslave" => MountFlags.Slave | MountFlags.Recursive,
        "unbindable" => MountFlags.Unbindable, "runbindable" => MountFlags.Unbindable | MountFlags.Recursive,
        _ => null,
    };

    public static MountOptions Parse(IEnumerable<string>? options)
    {
        MountFlags flags = 0, cleared = 0, propagation = 0;
        bool bind = false, recursive = false;
        var data = new List<string>();
        foreach (string o in options ?? [])
        {
            if (o is "bind" or "rbind")
            {
                bind = true;
                recursive |= o == "rbind";
            }
            else if (o == "defaults") { }
            else if (FlagOf(o) is { } f)
            {
                flags = (flags | f.Set) & ~f.Clear;
                cleared = (cleared | f.Clear) & ~f.Set;
            }
            else if (PropagationOf(o) is { } p) propagation = p;
            else data.Add(o);
        }
        return new MountOptions(flags, cleared, propagation, bind, recursive, data.Count == 0 ? null : string.Join(',', data));
    }
}
