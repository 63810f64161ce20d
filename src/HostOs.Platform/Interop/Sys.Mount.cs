namespace HostOs.Platform.Interop;

[Flags]
public enum MountFlags : ulong
{
    None = 0,
    ReadOnly = 1,          // MS_RDONLY
    NoSuid = 2,            // MS_NOSUID
    NoDev = 4,             // MS_NODEV
    NoExec = 8,            // MS_NOEXEC
    Remount = 32,          // MS_REMOUNT
    Synchronous = 16,      // MS_SYNCHRONOUS
    MandLock = 64,         // MS_MANDLOCK
    DirSync = 128,         // MS_DIRSYNC
    NoDirAtime = 2048,     // MS_NODIRATIME
    Unbindable = 1 << 17,  // MS_UNBINDABLE
    RelAtime = 1 << 21,    // MS_RELATIME
    StrictAtime = 1 << 24, // MS_STRICTATIME
    NoAtime = 1024,        // MS_NOATIME
    Bind = 4096,           // MS_BIND
    Move = 8192,           // MS_MOVE
    Recursive = 16384,     // MS_REC
    Private = 1 << 18,     // MS_PRIVATE
    Slave = 1 << 19,       // MS_SLAVE
    Shared = 1 << 20,      // MS_SHARED
}

public static unsafe partial class Sys
{
    [LibraryImport(Libc, EntryPoint = "mount", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int MountRaw(string? source, string target, string? fstype, ulong flags, string? data);

    [LibraryImport(Libc, EntryPoint = "umount2", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Umount2Raw(string target, int flags);

    [LibraryImport(Libc, EntryPoint = "chroot", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int ChrootRaw(string path);

    [LibraryImport(Libc, EntryPoint = "chdir", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int ChdirRaw(string path);

    public const int MNT_DETACH = 2;

    public static void Mount(string? source, string target, string? fstype, MountFlags flags, string? data = null) =>
        Retry(() => MountRaw(source, target, fstype, (ulong)flags, data), "mount", target);

    public static void Umount(string target, int flags = 0) =>
        Retry(() => Umount2Raw(target, flags), "umount", target);

    /// <summary>umount that reports failure instead of throwing (shutdown walks on).</summary>
    public static int TryUmount(string target, int flags = 0)
    {
        int r;
        do { r = Umount2Raw(target, flags); } while (r < 0 && Marshal.GetLastPInvokeError() == Errno.EINTR);
        return r < 0 ? Marshal.GetLastPInvokeError() : 0;
    }

    public static int TryMount(string? source, string target, string? fstype, MountFlags flags, string? data = null)
    {
        int r;
        do { r = MountRaw(source, target, fstype, (ulong)flags, data); } while (r < 0 && Marshal.GetLastPInvokeError() == Errno.EINTR);
        return r < 0 ? Marshal.GetLastPInvokeError() : 0;
    }

    public static void Chroot(string path) => Check(ChrootRaw(path), "chroot", path);

    public static void Chdir(string path) => Check(ChdirRaw(path), "chdir", path);
}
