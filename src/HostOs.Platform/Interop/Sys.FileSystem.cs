using Microsoft.Win32.SafeHandles;

namespace HostOs.Platform.Interop;

public static unsafe partial class Sys
{
    private const int O_RDONLY = 0, O_DIRECTORY = 0x10000, O_CLOEXEC = 0x80000;

    [LibraryImport(Libc, EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int OpenRaw(string path, int flags, int mode);

    [LibraryImport(Libc, EntryPoint = "fsync", SetLastError = true)]
    private static partial int FsyncRaw(SafeFileHandle fd);

    [LibraryImport(Libc, EntryPoint = "pipe2", SetLastError = true)]
    private static partial int Pipe2Raw(int* fds, int flags);

    [LibraryImport(Libc, EntryPoint = "sethostname", SetLastError = true)]
    private static partial int SetHostnameRaw(byte* name, nuint length);

    /// <summary>Opens a directory so it can be fsync'ed after a rename inside it.</summary>
    public static SafeFileHandle OpenDirectory(string path)
    {
        int fd = Retry(() => OpenRaw(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0), "open", path);
        return new SafeFileHandle(fd, ownsHandle: true);
    }

    public static void Fsync(SafeFileHandle handle, string path) =>
        Retry(() => FsyncRaw(handle), "fsync", path);

    /// <summary>fsync of a directory: makes a rename or a new entry in it durable.</summary>
    public static void FsyncDirectory(string path)
    {
        using SafeFileHandle dir = OpenDirectory(path);
        Fsync(dir, path);
    }

    /// <summary>
    /// rename(2) that survives a power cut on any file system, FAT included: the rename,
    /// then an fsync of the file under its new name, then of the directory. On FAT a rename
    /// makes a new directory entry with size 0 and no clusters; the file's size and first
    /// cluster reach it only when the file's inode is written back, which the directory's
    /// fsync does not do. (Found by a power cut in qemu-tests UpdateTests: the renamed boot
    /// entry was on disk, empty.)
    /// </summary>
    public static void RenameDurably(string from, string to, bool overwrite)
    {
        File.Move(from, to, overwrite);
        using (SafeFileHandle file = File.OpenHandle(to, FileMode.Open, FileAccess.Read))
        {
            Fsync(file, to);
        }
        FsyncDirectory(Path.GetDirectoryName(Path.GetFullPath(to))!);
    }

    /// <summary>
    /// mkdir -p whose new directories survive a power cut: each one made is followed by an
    /// fsync of its parent (a directory's entry lives in its parent; on FAT, nothing else
    /// writes it). Without it a file synced into a new directory can vanish with the directory.
    /// </summary>
    public static void CreateDirectoryDurably(string path)
    {
        string full = Path.GetFullPath(path);
        if (Directory.Exists(full)) return;
        string parent = Path.GetDirectoryName(full) ?? throw new IOException($"cannot create {full}");
        CreateDirectoryDurably(parent);
        Directory.CreateDirectory(full);
        FsyncDirectory(parent);
    }

    /// <summary>A pipe whose both ends are close-on-exec (the child gets its end through dup2).</summary>
    public static (SafeFileHandle Read, SafeFileHandle Write) Pipe()
    {
        int* fds = stackalloc int[2];
        Check(Pipe2Raw(fds, O_CLOEXEC), "pipe2", null);
        return (new SafeFileHandle(fds[0], ownsHandle: true), new SafeFileHandle(fds[1], ownsHandle: true));
    }

    [LibraryImport(Libc, EntryPoint = "write", SetLastError = true)]
    private static partial nint WriteRaw(int fd, byte* buffer, nuint count);

    /// <summary>
    /// write(2) of all of <paramref name="data"/> to a descriptor we do not own (fd 1, 2).
    /// Not a FileStream: on a regular file a FileStream writes at its own offset 0, over
    /// whatever the file held, instead of at the descriptor's offset.
    /// </summary>
    public static void WriteAll(int fd, ReadOnlySpan<byte> data) => WriteAll(fd, data, null);

    /// <summary>read(2) into <paramref name="buffer"/> (EINTR retried): the count, 0 at the end.</summary>
    public static int Read(SafeFileHandle fd, Span<byte> buffer)
    {
        nint n;
        fixed (byte* p = buffer)
        {
            do n = ReadRaw((int)fd.DangerousGetHandle(), p, (nuint)buffer.Length);
            while (n < 0 && Marshal.GetLastPInvokeError() == Errno.EINTR);
        }
        return n >= 0 ? (int)n : throw new SysException("read", null, Marshal.GetLastPInvokeError());
    }

    /// <param name="name">What the descriptor is, for the error (else "fd N").</param>
    private static void WriteAll(int fd, ReadOnlySpan<byte> data, string? name)
    {
        fixed (byte* p = data)
        {
            int done = 0;
            while (done < data.Length)
            {
                nint n = WriteRaw(fd, p + done, (nuint)(data.Length - done));
                if (n < 0)
                {
                    int errno = Marshal.GetLastPInvokeError();
                    if (errno == Errno.EINTR) continue;
                    throw new SysException("write", name ?? $"fd {fd}", errno);
                }
                done += (int)n;
            }
        }
    }

    private const int O_CREAT = 0x40, O_TRUNC = 0x200;

    [LibraryImport(Libc, EntryPoint = "read", SetLastError = true)]
    private static partial nint ReadRaw(int fd, byte* buffer, nuint count);

    [LibraryImport(Libc, EntryPoint = "unlink", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int UnlinkRaw(string path);

    [LibraryImport(Libc, EntryPoint = "rename", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int RenameRaw(string from, string to);

    /*
     * Whole small files by open/read/write/close, not File.*: a FileStream takes an advisory
     * lock, stats the file and goes through buffering strategies, and File's errors are
     * exceptions even where absence is an answer. In a short-lived process under emulation
     * each first-time code path costs (docs/containers.md "Start latency"); these are a
     * handful of system calls.
     */

    /// <summary>
    /// open(2) of a file that may be absent: -1 when it (or a directory on its path, or the
    /// /proc entry of a process that is gone) does not exist; other failures throw.
    /// </summary>
    private static int TryOpenRaw(string path, int flags)
    {
        while (true)
        {
            int fd = OpenRaw(path, flags | O_CLOEXEC, 0);
            if (fd >= 0) return fd;
            int errno = Marshal.GetLastPInvokeError();
            if (errno is Errno.ENOENT or Errno.ESRCH) return -1;
            if (errno != Errno.EINTR) throw new SysException("open", path, errno);
        }
    }

    /// <summary>The whole file, or null when it (or a directory on its path, or the /proc
    /// entry of a process that is gone) does not exist. Other failures throw.</summary>
    public static byte[]? TryReadFile(string path)
    {
        int fd = TryOpenRaw(path, O_RDONLY);
        if (fd < 0) return null;
        try
        {
            return ReadToEnd(fd, path);
        }
        finally
        {
            CloseRaw(fd);
        }
    }

    /// <summary>Everything until end of file (a pipe: until every writer has closed it).</summary>
    /// <param name="name">What the descriptor is, for the error.</param>
    public static byte[] ReadToEnd(SafeFileHandle handle, string name) =>
        ReadToEnd((int)handle.DangerousGetHandle(), name) ?? throw new SysException("read", name, Errno.ESRCH);

    /// <summary>null for ESRCH: /proc/PID/... of a process that went while it was read.</summary>
    private static byte[]? ReadToEnd(int fd, string name)
    {
        byte[] buffer = new byte[4096];
        int length = 0;
        while (true)
        {
            if (length == buffer.Length) Array.Resize(ref buffer, buffer.Length * 2);
            nint n;
            fixed (byte* p = buffer) n = ReadRaw(fd, p + length, (nuint)(buffer.Length - length));
            if (n < 0)
            {
                int errno = Marshal.GetLastPInvokeError();
                if (errno == Errno.EINTR) continue;
                if (errno == Errno.ESRCH) return null;
                throw new SysException("read", name, errno);
            }
            if (n == 0) return buffer.AsSpan(0, length).ToArray();
            length += (int)n;
        }
    }

    /// <summary>The whole file; a missing one throws SysException (ENOENT) naming it.</summary>
    public static byte[] ReadFile(string path) =>
        TryReadFile(path) ?? throw new SysException("open", path, Errno.ENOENT);

    /// <summary>
    /// Creates or truncates PATH and writes <paramref name="content"/>; <paramref name="mode"/>
    /// applies when the file is new (and the umask to it). With <paramref name="durable"/> the
    /// content is fsync'ed before the file is closed.
    /// </summary>
    public static void WriteFile(string path, ReadOnlySpan<byte> content, int mode = 0b110_110_110, bool durable = false)
    {
        int fd = Retry(() => OpenRaw(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode), "open", path);
        using var file = new SafeFileHandle(fd, ownsHandle: true);
        WriteAll(fd, content, path);
        if (durable) Fsync(file, path);
    }

    /// <summary>
    /// Writes <paramref name="content"/> to a file that must exist (cgroup and proc files):
    /// open(2) for writing without create or truncate, then write(2), which for these files
    /// is one call; false when there is no such file.
    /// </summary>
    public static bool TryWriteExisting(string path, ReadOnlySpan<byte> content)
    {
        int fd = TryOpenRaw(path, O_WRONLY);
        if (fd < 0) return false;
        using var file = new SafeFileHandle(fd, ownsHandle: true);
        WriteAll(fd, content, path);
        return true;
    }

    /// <summary>unlink(2); false when there was nothing to remove.</summary>
    public static bool TryUnlink(string path)
    {
        if (UnlinkRaw(path) == 0) return true;
        int errno = Marshal.GetLastPInvokeError();
        if (errno == Errno.ENOENT) return false;
        throw new SysException("unlink", path, errno);
    }

    [LibraryImport(Libc, EntryPoint = "rmdir", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int RmdirRaw(string path);

    /// <summary>rmdir(2); false when the directory is not empty (or already gone).</summary>
    public static bool TryRemoveDirectory(string path)
    {
        if (RmdirRaw(path) == 0) return true;
        int errno = Marshal.GetLastPInvokeError();
        if (errno is Errno.ENOTEMPTY or Errno.EEXIST or Errno.ENOENT) return false;
        throw new SysException("rmdir", path, errno);
    }

    /// <summary>rename(2): replaces <paramref name="to"/> atomically.</summary>
    public static void Rename(string from, string to) => Check(RenameRaw(from, to), "rename", $"{from}' to '{to}");

    [LibraryImport(Libc, EntryPoint = "syncfs", SetLastError = true)]
    private static partial int SyncfsRaw(SafeFileHandle fd);

    /// <summary>syncfs(2): everything written to the file system holding PATH reaches the disk.</summary>
    public static void SyncFileSystem(string path)
    {
        using SafeFileHandle dir = OpenDirectory(path);
        Retry(() => SyncfsRaw(dir), "syncfs", path);
    }

    public static void SetHostname(string name)
    {
        byte[] bytes = System.Text.Encoding.UTF8.GetBytes(name);
        fixed (byte* p = bytes)
        {
            Check(SetHostnameRaw(p, (nuint)bytes.Length), "sethostname", name);
        }
    }
}
