using Microsoft.Win32.SafeHandles;

namespace HostOs.Platform.Interop;

/// <summary>What a child process gets. File descriptors are duplicated onto 0, 1, 2.</summary>
public sealed record SpawnRequest
{
    public required string Path { get; init; }
    public required IReadOnlyList<string> Args { get; init; }
    public IReadOnlyList<string> Environment { get; init; } = [];
    public SafeFileHandle? Stdin { get; init; }
    public SafeFileHandle? Stdout { get; init; }
    public SafeFileHandle? Stderr { get; init; }
    /// <summary>More descriptors for the child, duplicated onto 3, 4, ... in order.</summary>
    public IReadOnlyList<SafeFileHandle> ExtraFds { get; init; } = [];
    /// <summary>Start the child in a session of its own (setsid), so a signal to our
    /// process group or terminal never reaches it by accident.</summary>
    public bool NewSession { get; init; } = true;
}

public static unsafe partial class Sys
{
    // glibc x86-64: sizeof(posix_spawn_file_actions_t) = 80, sizeof(posix_spawnattr_t) = 336,
    // sizeof(sigset_t) = 128. Buffers are rounded up; glibc only touches its own bytes.
    private const int FileActionsSize = 128, SpawnAttrSize = 512, SigsetSize = 128;
    private const short POSIX_SPAWN_SETSIGDEF = 0x04, POSIX_SPAWN_SETSIGMASK = 0x08, POSIX_SPAWN_SETSID = 0x80;

    [LibraryImport(Libc, EntryPoint = "posix_spawn")]
    private static partial int PosixSpawn(out int pid, byte* path, void* fileActions, void* attr, byte** argv, byte** envp);

    [LibraryImport(Libc)] private static partial int posix_spawn_file_actions_init(void* actions);
    [LibraryImport(Libc)] private static partial int posix_spawn_file_actions_destroy(void* actions);
    [LibraryImport(Libc)] private static partial int posix_spawn_file_actions_adddup2(void* actions, int fd, int newfd);
    [LibraryImport(Libc)] private static partial int posix_spawnattr_init(void* attr);
    [LibraryImport(Libc)] private static partial int posix_spawnattr_destroy(void* attr);
    [LibraryImport(Libc)] private static partial int posix_spawnattr_setflags(void* attr, short flags);
    [LibraryImport(Libc)] private static partial int posix_spawnattr_setsigmask(void* attr, void* set);
    [LibraryImport(Libc)] private static partial int posix_spawnattr_setsigdefault(void* attr, void* set);
    [LibraryImport(Libc)] private static partial int sigemptyset(void* set);
    [LibraryImport(Libc, EntryPoint = "fcntl", SetLastError = true)] private static partial int FcntlDup(SafeFileHandle fd, int cmd, int min);
    private const int F_DUPFD_CLOEXEC = 1030, F_SETFD = 2, FD_CLOEXEC = 1;

    /// <summary>Marks a descriptor close-on-exec: it stays usable until a successful execve closes it.</summary>

    /// <summary>A close-on-exec copy of descriptor <paramref name="fd"/>, owned by the caller.</summary>
    public static SafeFileHandle Duplicate(int fd) => new(Check(FcntlRaw(fd, F_DUPFD_CLOEXEC, 3), "fcntl(F_DUPFD_CLOEXEC)", null), ownsHandle: true);

    public static void SetCloseOnExec(SafeFileHandle fd) => Check(FcntlDup(fd, F_SETFD, FD_CLOEXEC), "fcntl(F_SETFD, FD_CLOEXEC)", null);

    [LibraryImport(Libc, EntryPoint = "fcntl", SetLastError = true)] private static partial int FcntlRaw(int fd, int cmd, int arg);

    /// <summary>Marks a descriptor number close-on-exec if it is open (EBADF is not an error).</summary>
    public static void SetCloseOnExec(int fd)
    {
        if (FcntlRaw(fd, F_SETFD, FD_CLOEXEC) < 0 && Marshal.GetLastPInvokeError() != Errno.EBADF)
        {
            throw new SysException("fcntl(F_SETFD, FD_CLOEXEC)", $"fd {fd}", Marshal.GetLastPInvokeError());
        }
    }
    [LibraryImport(Libc)] private static partial int sigfillset(void* set);

    /// <summary>
    /// Starts a process with posix_spawn(3). glibc creates the child with
    /// CLONE_VM|CLONE_VFORK and runs only its own C code until execve, so no managed
    /// code runs in the child: the safe way to start processes from a multi-threaded
    /// runtime. Every signal is reset to its default and unblocked in the child (the
    /// .NET runtime ignores SIGPIPE, and exec would keep that).
    /// Callers that reap must hold their process-table lock around this call.
    /// </summary>
    public static int Spawn(SpawnRequest request)
    {
        byte* actions = stackalloc byte[FileActionsSize];
        byte* attr = stackalloc byte[SpawnAttrSize];
        byte* all = stackalloc byte[SigsetSize];
        byte* none = stackalloc byte[SigsetSize];
        var handles = new List<SafeHandle>(3);
        var copies = new List<SafeFileHandle>();
        using var strings = new NativeStrings();
        try
        {
            ThrowIfError(posix_spawn_file_actions_init(actions), "posix_spawn_file_actions_init", request.Path);
            ThrowIfError(posix_spawnattr_init(attr), "posix_spawnattr_init", request.Path);
            sigfillset(all);
            sigemptyset(none);
            short flags = POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK;
            if (request.NewSession)
            {
                flags |= POSIX_SPAWN_SETSID;
            }
            ThrowIfError(posix_spawnattr_setflags(attr, flags), "posix_spawnattr_setflags", request.Path);
            ThrowIfError(posix_spawnattr_setsigdefault(attr, all), "posix_spawnattr_setsigdefault", request.Path);
            ThrowIfError(posix_spawnattr_setsigmask(attr, none), "posix_spawnattr_setsigmask", request.Path);

            AddDup(actions, request.Stdin, 0, handles, request.Path);
            AddDup(actions, request.Stdout, 1, handles, request.Path);
            AddDup(actions, request.Stderr, 2, handles, request.Path);
            // dup2 onto 3, 4, ... in order would clobber a source that already sits in that
            // range: such sources are first copied above it (close-on-exec, closed below).
            for (int i = 0; i < request.ExtraFds.Count; i++)
            {
                SafeFileHandle source = request.ExtraFds[i];
                if ((int)source.DangerousGetHandle() < 3 + request.ExtraFds.Count)
                {
                    int copy = Check(FcntlDup(source, F_DUPFD_CLOEXEC, 3 + request.ExtraFds.Count), "fcntl(F_DUPFD_CLOEXEC)", request.Path);
                    source = new SafeFileHandle(copy, ownsHandle: true);
                    copies.Add(source);
                }
                AddDup(actions, source, 3 + i, handles, request.Path);
            }

            byte* path = strings.Add(request.Path);
            byte** argv = strings.AddArray(request.Args);
            byte** envp = strings.AddArray(request.Environment);
            int error = PosixSpawn(out int pid, path, actions, attr, argv, envp);
            ThrowIfError(error, "posix_spawn", request.Path);
            return pid;
        }
        finally
        {
            posix_spawn_file_actions_destroy(actions);
            posix_spawnattr_destroy(attr);
            foreach (SafeHandle h in handles)
            {
                h.DangerousRelease();
            }
            foreach (SafeFileHandle c in copies) c.Dispose();
        }
    }

    private static void AddDup(byte* actions, SafeFileHandle? handle, int target, List<SafeHandle> held, string path)
    {
        if (handle is null)
        {
            return;
        }
        bool added = false;
        handle.DangerousAddRef(ref added);
        held.Add(handle);
        ThrowIfError(posix_spawn_file_actions_adddup2(actions, (int)handle.DangerousGetHandle(), target),
            "posix_spawn_file_actions_adddup2", path);
    }

    /// <summary>For the posix_spawn family, which returns the error number itself.</summary>
    private static void ThrowIfError(int error, string operation, string target)
    {
        if (error != 0)
        {
            throw new SysException(operation, target, error);
        }
    }

    /// <summary>NUL-terminated UTF-8 copies that live until disposed.</summary>
    private sealed class NativeStrings : IDisposable
    {
        private readonly List<nint> _blocks = [];

        public byte* Add(string s)
        {
            int n = System.Text.Encoding.UTF8.GetByteCount(s);
            byte* p = (byte*)NativeMemory.Alloc((nuint)n + 1);
            _blocks.Add((nint)p);
            fixed (char* c = s)
            {
                System.Text.Encoding.UTF8.GetBytes(c, s.Length, p, n);
            }
            p[n] = 0;
            return p;
        }

        public byte** AddArray(IReadOnlyList<string> items)
        {
            byte** array = (byte**)NativeMemory.Alloc((nuint)(items.Count + 1), (nuint)sizeof(byte*));
            _blocks.Add((nint)array);
            for (int i = 0; i < items.Count; i++)
            {
                array[i] = Add(items[i]);
            }
            array[items.Count] = null;
            return array;
        }

        public void Dispose()
        {
            foreach (nint p in _blocks)
            {
                NativeMemory.Free((void*)p);
            }
        }
    }
}
