using Microsoft.Win32.SafeHandles;

namespace HostOs.Platform.Interop;

/// <summary>
/// FIFOs and descriptor-relative opens: what a container's start handshake needs
/// (docs/containers.md, "The runc-compatible front"). The stage keeps an O_PATH handle on
/// its state directory across pivot_root and opens the FIFO through it.
/// </summary>
public static unsafe partial class Sys
{
    public const int O_WRONLY = 1, O_NONBLOCK = 0x800, O_PATH = 0x200000;
    public const short POLLIN = 0x1, POLLERR = 0x8, POLLHUP = 0x10;

    [LibraryImport(Libc, EntryPoint = "mkfifo", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int MkfifoRaw(string path, int mode);

    [StructLayout(LayoutKind.Sequential)]
    private struct PollFd
    {
        public int Fd;
        public short Events;
        public short REvents;
    }

    [LibraryImport(Libc, EntryPoint = "poll", SetLastError = true)]
    private static partial int PollRaw(PollFd* fds, nuint count, int timeoutMs);

    [LibraryImport(Libc, EntryPoint = "mkdir", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int MkdirRaw(string path, int mode);

    /// <summary>mkdir(2): unlike Directory.CreateDirectory, fails with EEXIST, which makes it a lock.</summary>
    public static void MakeDirectory(string path, int mode) => Check(MkdirRaw(path, mode), "mkdir", path);

    [LibraryImport(Libc, EntryPoint = "mknod", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int MknodRaw(string path, uint mode, ulong dev);

    [LibraryImport(Libc, EntryPoint = "lchown", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int LchownRaw(string path, uint uid, uint gid);

    public const uint S_IFMT = 0xF000, S_IFIFO = 0x1000, S_IFCHR = 0x2000, S_IFBLK = 0x6000, S_IFREG = 0x8000;

    /// <summary>mknod(2) with glibc's makedev encoding of major and minor.</summary>
    public static void MakeNode(string path, uint mode, long major, long minor)
    {
        ulong ma = (ulong)major, mi = (ulong)minor;
        ulong dev = ((ma & 0xfffff000UL) << 32) | ((ma & 0xfffUL) << 8) | ((mi & 0xffffff00UL) << 12) | (mi & 0xffUL);
        Check(MknodRaw(path, mode, dev), "mknod", path);
    }

    /// <summary>lchown(2): never follows a symbolic link.</summary>
    public static void Chown(string path, uint uid, uint gid) => Check(LchownRaw(path, uid, gid), "lchown", path);

    [LibraryImport(Libc, EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int StatxRaw(int dirFd, string path, int flags, uint mask, byte* buffer);

    /// <summary>Owner and mode bits (type included) of a path, not following a final symbolic link; null if it does not exist.</summary>
    public static (uint Uid, uint Gid, uint Mode)? LStat(string path) => OwnerAndMode(path, followLinks: false);

    /// <summary>
    /// Whether a path names a block device, following links (a partition's name under
    /// /dev/disk/by-*, or any other link to one): its size is then sysfs's, not stat's, and its
    /// bytes can be moved around the page cache. False when it does not exist.
    /// </summary>
    public static bool IsBlockDevice(string path) => OwnerAndMode(path, followLinks: true) is { } st && (st.Mode & S_IFMT) == S_IFBLK;

    /// <summary>Whether a path names a regular file, following links (not a FIFO, a device or a directory, whose reads may never end). False when it does not exist.</summary>
    public static bool IsRegularFile(string path) => OwnerAndMode(path, followLinks: true) is { } st && (st.Mode & S_IFMT) == S_IFREG;

    private static (uint Uid, uint Gid, uint Mode)? OwnerAndMode(string path, bool followLinks)
    {
        const int AT_FDCWD = -100, AT_SYMLINK_NOFOLLOW = 0x100;
        const uint STATX_TYPE = 1, STATX_MODE = 2, STATX_UID = 8, STATX_GID = 16;
        byte* buffer = stackalloc byte[256];
        if (StatxRaw(AT_FDCWD, path, followLinks ? 0 : AT_SYMLINK_NOFOLLOW, STATX_TYPE | STATX_MODE | STATX_UID | STATX_GID, buffer) != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            if (errno is Errno.ENOENT or Errno.ENOTDIR) return null;
            throw new SysException("statx", path, errno);
        }
        // struct statx: stx_uid at 20, stx_gid at 24, stx_mode (u16) at 28.
        return (*(uint*)(buffer + 20), *(uint*)(buffer + 24), *(ushort*)(buffer + 28));
    }

    /// <summary>
    /// What a path names, following links (/proc's magic links too): device, inode and mount
    /// id, so two paths can be told to be the same file where their names prove nothing.
    /// </summary>
    public static (ulong Device, ulong Inode, ulong Mount) Identity(string path)
    {
        const int AT_FDCWD = -100;
        const uint STATX_INO = 0x100, STATX_MNT_ID = 0x1000;
        byte* buffer = stackalloc byte[256];
        new Span<byte>(buffer, 256).Clear();
        Check(StatxRaw(AT_FDCWD, path, 0, STATX_INO | STATX_MNT_ID, buffer), "statx", path);
        // struct statx: stx_ino (u64) at 32, stx_dev_major and stx_dev_minor (u32) at 136 and 140, stx_mnt_id (u64) at 144.
        return (((ulong)*(uint*)(buffer + 136) << 32) | *(uint*)(buffer + 140), *(ulong*)(buffer + 32), *(ulong*)(buffer + 144));
    }

    public static void MakeFifo(string path, int mode) => Check(MkfifoRaw(path, mode), "mkfifo", path);

    /// <summary>open(2) with raw flags (O_CLOEXEC always added).</summary>
    public static SafeFileHandle Open(string path, int flags)
    {
        int fd = Retry(() => OpenRaw(path, flags | O_CLOEXEC, 0), "open", path);
        return new SafeFileHandle(fd, ownsHandle: true);
    }

    /// <summary>A handle naming a directory that stays valid whatever happens to the root.</summary>
    public static SafeFileHandle OpenPath(string directory) => Open(directory, O_PATH | O_DIRECTORY);

    /// <summary>poll(2) on one descriptor: its revents, or 0 on timeout (EINTR counts as a timeout).</summary>
    public static short Poll(SafeFileHandle fd, short events, int timeoutMs)
    {
        bool added = false;
        fd.DangerousAddRef(ref added);
        try
        {
            var p = new PollFd { Fd = (int)fd.DangerousGetHandle(), Events = events };
            int n = PollRaw(&p, 1, timeoutMs);
            if (n < 0 && Marshal.GetLastPInvokeError() != Errno.EINTR) Check(n, "poll", null);
            return n > 0 ? p.REvents : (short)0;
        }
        finally
        {
            if (added) fd.DangerousRelease();
        }
    }
}
