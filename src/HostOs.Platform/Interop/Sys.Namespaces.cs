using Microsoft.Win32.SafeHandles;

namespace HostOs.Platform.Interop;

[Flags]
public enum CloneFlags
{
    None = 0,
    NewTime = 0x00000080,   // CLONE_NEWTIME
    Fs = 0x00000200,        // CLONE_FS (unshare: stop sharing cwd/root with the other threads)
    NewNs = 0x00020000,     // CLONE_NEWNS (mount)
    NewCgroup = 0x02000000, // CLONE_NEWCGROUP
    NewUts = 0x04000000,    // CLONE_NEWUTS
    NewIpc = 0x08000000,    // CLONE_NEWIPC
    NewUser = 0x10000000,   // CLONE_NEWUSER
    NewPid = 0x20000000,    // CLONE_NEWPID
    NewNet = 0x40000000,    // CLONE_NEWNET
}

public static unsafe partial class Sys
{
    private const long SYS_setresuid = 117, SYS_setresgid = 119, SYS_setgroups = 116;

    [LibraryImport(Libc, EntryPoint = "unshare", SetLastError = true)]
    private static partial int UnshareRaw(int flags);

    [LibraryImport(Libc, EntryPoint = "setns", SetLastError = true)]
    private static partial int SetNsRaw(SafeFileHandle fd, int nstype);

    /// <summary>unshare(2) for the calling thread (namespaces other than user work per thread).</summary>
    public static void Unshare(CloneFlags flags)
    {
        // The flags are named only on failure: Enum.ToString goes through reflection metadata.
        if (UnshareRaw((int)flags) != 0) throw new SysException("unshare", flags.ToString(), Marshal.GetLastPInvokeError());
    }

    /// <summary>setns(2) for the calling thread; a mount namespace needs unshare(CLONE_FS) first.</summary>
    public static void SetNs(SafeFileHandle ns, CloneFlags type, string path) => Check(SetNsRaw(ns, (int)type), "setns", path);

    /// <summary>
    /// setgroups/setresgid/setresuid as raw syscalls: they change the calling thread only.
    /// glibc's wrappers signal every thread of the process to change all of them, which is
    /// wrong for a thread that is about to execve (execve keeps this thread's credentials).
    /// </summary>
    public static void SetCredentialsForThisThread(uint uid, uint gid, IReadOnlyList<uint> groups)
    {
        uint* list = stackalloc uint[Math.Max(1, groups.Count)];
        for (int i = 0; i < groups.Count; i++) list[i] = groups[i];
        if (Syscall3(SYS_setgroups, groups.Count, (long)list, 0) != 0) throw new SysException("setgroups", null, Marshal.GetLastPInvokeError());
        if (Syscall3(SYS_setresgid, gid, gid, gid) != 0) throw new SysException("setresgid", gid.ToString(System.Globalization.CultureInfo.InvariantCulture), Marshal.GetLastPInvokeError());
        if (Syscall3(SYS_setresuid, uid, uid, uid) != 0) throw new SysException("setresuid", uid.ToString(System.Globalization.CultureInfo.InvariantCulture), Marshal.GetLastPInvokeError());
    }
}
