namespace HostOs.Platform.Interop;

public static unsafe partial class Sys
{
    private const long SYS_capset = 126;
    private const int PR_SET_KEEPCAPS = 8, PR_CAPBSET_DROP = 24, PR_SET_NO_NEW_PRIVS = 38, PR_CAP_AMBIENT = 47,
        PR_CAP_AMBIENT_RAISE = 2, PR_CAP_AMBIENT_CLEAR_ALL = 4;
    private const uint LINUX_CAPABILITY_VERSION_3 = 0x20080522;
    public const int LastCapability = 40; // CAP_CHECKPOINT_RESTORE (Linux 5.9+)

    [LibraryImport(Libc, EntryPoint = "prctl", SetLastError = true)]
    private static partial int Prctl(int option, ulong a2, ulong a3, ulong a4, ulong a5);

    [LibraryImport(Libc, EntryPoint = "setrlimit", SetLastError = true)]
    private static partial int SetRlimitRaw(int resource, ulong* limits);

    [LibraryImport(Libc, EntryPoint = "setdomainname", SetLastError = true)]
    private static partial int SetDomainNameRaw(byte* name, nuint length);

    private static void PrctlOrThrow(string what, int option, ulong a2, ulong a3 = 0)
    {
        if (Prctl(option, a2, a3, 0, 0) != 0) throw new SysException($"prctl({what})", null, Marshal.GetLastPInvokeError());
    }

    /// <summary>Keep permitted capabilities across setresuid to a non-root uid (this thread).</summary>
    public static void SetKeepCaps(bool keep) => PrctlOrThrow("PR_SET_KEEPCAPS", PR_SET_KEEPCAPS, keep ? 1UL : 0UL);

    public static void DropBoundingCapability(int cap) => PrctlOrThrow($"PR_CAPBSET_DROP {cap}", PR_CAPBSET_DROP, (ulong)cap);

    /// <summary>PR_SET_DUMPABLE 0: /proc/PID of this process (exe, fd, mem) is closed to others until execve resets it.</summary>
    public static void SetNotDumpable() => PrctlOrThrow("PR_SET_DUMPABLE", 4 /* PR_SET_DUMPABLE */, 0);

    public static void SetNoNewPrivileges() => PrctlOrThrow("PR_SET_NO_NEW_PRIVS", PR_SET_NO_NEW_PRIVS, 1);

    public static void ClearAmbientCapabilities() => PrctlOrThrow("PR_CAP_AMBIENT_CLEAR_ALL", PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL);

    public static void RaiseAmbientCapability(int cap) => PrctlOrThrow($"PR_CAP_AMBIENT_RAISE {cap}", PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, (ulong)cap);

    /// <summary>capset(2), version 3 (two 32-bit words per set), for the calling thread.</summary>
    public static void SetCapabilities(ulong effective, ulong permitted, ulong inheritable)
    {
        uint* header = stackalloc uint[2] { LINUX_CAPABILITY_VERSION_3, 0 };
        uint* data = stackalloc uint[6]
        {
            (uint)effective, (uint)permitted, (uint)inheritable,
            (uint)(effective >> 32), (uint)(permitted >> 32), (uint)(inheritable >> 32),
        };
        if (Syscall3(SYS_capset, (long)header, (long)data, 0) != 0) throw new SysException("capset", null, Marshal.GetLastPInvokeError());
    }

    public static void SetRlimit(int resource, ulong soft, ulong hard, string name)
    {
        ulong* limits = stackalloc ulong[2] { soft, hard };
        Check(SetRlimitRaw(resource, limits), "setrlimit", name);
    }

    public static void SetDomainName(string name)
    {
        byte[] bytes = System.Text.Encoding.UTF8.GetBytes(name);
        fixed (byte* p = bytes) Check(SetDomainNameRaw(p, (nuint)bytes.Length), "setdomainname", name);
    }
}
