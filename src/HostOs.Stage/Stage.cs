// hostos-stage: the container side of creating a container or exec'ing into one
// (docs/containers.md, "The native stage"). Started by posix_spawn already inside the
// container's namespaces (all but mount for an exec, all but cgroup for a create), with fd 3
// carrying the parent's plan and then its commands ('G': it is in the cgroup; 'h': the
// hooks ran; 'S': start), fd 4 its reports ('H' hooks may run, 'R' ready, or 'E' and the
// failure), fd 5 the container's mount namespace (exec) or its state directory (a create
// started through exec.fifo), then, for a process with a terminal, the console socket (the
// plan says which fd). A create builds the root file system (mounts, devices,
// pivot_root, masked and read-only paths), sets hostname, sysctls and oom_score_adj; both
// then apply rlimits, find the program and its cwd, report ready, wait for start, set umask,
// seccomp, credentials and capabilities on the only thread, and execve the program. A
// process with a terminal gets a pty made in the container (its master sent over the console
// socket); a create's startContainer hooks run after start, before the program.
//
// It is C# compiled by NativeAOT without the .NET runtime (CoreLib.cs): a process start
// costs what a C program's does, instead of a runtime's start (~80 ms under TCG). So no
// objects (nor reference-typed static fields: the runtime would allocate them), no
// exceptions, no stackalloc: each step returns false with the failure recorded, and the
// parent formats the message (ContainerProcess.Failure).
using System.Runtime.InteropServices;

[module: System.Runtime.CompilerServices.SkipLocalsInit]

namespace HostOs.Stage;

internal static unsafe class Stage
{
    private const int ControlFd = 3, StatusFd = 4, NamespaceFd = 5;
    private const uint PlanVersion = 3;
    private const uint FlagNoNewPrivileges = 1, FlagUmask = 2, FlagExec = 4, FlagStartFifo = 8, FlagOwnCgroup = 16,
        FlagReadonlyRoot = 32, FlagOwnNetwork = 64, FlagPauseForHooks = 128, FlagTerminal = 256;
    private const uint MountBind = 1, MountRecursive = 2;
    private const int CLONE_FS = 0x200, CLONE_NEWNS = 0x20000, CLONE_NEWCGROUP = 0x02000000, F_SETFD = 2, FD_CLOEXEC = 1;
    private const int EBADF = 9, ENOENT = 2, EEXIST = 17, EINTR = 4;
    private const int O_WRONLY = 1, O_RDWR = 2, O_CREAT = 0x40, O_NOCTTY = 0x100, O_TRUNC = 0x200, O_NONBLOCK = 0x800,
        O_CLOEXEC = 0x80000, O_NOFOLLOW = 0x20000, F_SETFL = 4, EAGAIN = 11;
    private const ulong TIOCSPTLCK = 0x40045431, TIOCGPTPEER = 0x5441, TIOCSCTTY = 0x540E, TIOCSWINSZ = 0x5414;
    private const int SIGKILL = 9, SIGPIPE = 13, WNOHANG = 1, POLLIN = 1, POLLOUT = 4;
    private const int MaxHooks = 1024, HookOutputSize = 2000;
    private const ulong MS_RDONLY = 1, MS_NOSUID = 2, MS_NODEV = 4, MS_NOEXEC = 8, MS_REMOUNT = 32, MS_BIND = 4096, MS_REC = 16384;
    private const int MNT_DETACH = 2;
    private const long SYS_pivot_root = 155, SYS_close_range = 436;
    private const long CLOSE_RANGE_CLOEXEC = 4;
    private const int PR_SET_DUMPABLE = 4, PR_SET_KEEPCAPS = 8, PR_CAPBSET_DROP = 24, PR_SET_NO_NEW_PRIVS = 38, PR_CAP_AMBIENT = 47;
    private const int PR_CAP_AMBIENT_RAISE = 2, PR_CAP_AMBIENT_CLEAR_ALL = 4;
    private const long SYS_capset = 126, SYS_setgroups = 116, SYS_setresuid = 117, SYS_setresgid = 119, SYS_seccomp = 317;
    private const uint S_IFMT = 0xF000, S_IFDIR = 0x4000, S_IFLNK = 0xA000;

    [DllImport("libc")] private static extern nint read(int fd, byte* buffer, nint count);
    [DllImport("libc")] private static extern nint write(int fd, byte* buffer, nint count);
    [DllImport("libc")] private static extern int close(int fd);
    [DllImport("libc")] private static extern int fcntl(int fd, int command, int argument);
    [DllImport("libc")] private static extern byte* malloc(nint size);
    [DllImport("libc")] private static extern int* __errno_location();
    [DllImport("libc")] private static extern int prctl(int option, ulong a2, ulong a3, ulong a4, ulong a5);
    [DllImport("libc")] private static extern long syscall(long number, long a1, long a2, long a3);
    [DllImport("libc")] private static extern int unshare(int flags);
    [DllImport("libc")] private static extern int setns(int fd, int type);
    [DllImport("libc")] private static extern int setrlimit(int resource, ulong* limits);
    [DllImport("libc")] private static extern int chdir(byte* path);
    [DllImport("libc")] private static extern uint umask(uint mask);
    [DllImport("libc")] private static extern int stat(byte* path, byte* buffer);
    [DllImport("libc")] private static extern int execve(byte* path, byte** argv, byte** envp);
    [DllImport("libc")] private static extern int lstat(byte* path, byte* buffer);
    [DllImport("libc")] private static extern int mkdir(byte* path, uint mode);
    [DllImport("libc")] private static extern int open(byte* path, int flags, uint mode);
    [DllImport("libc")] private static extern int openat(int directory, byte* path, int flags, uint mode);
    [DllImport("libc")] private static extern int mount(byte* source, byte* target, byte* type, ulong flags, byte* data);
    [DllImport("libc")] private static extern int umount2(byte* target, int flags);
    [DllImport("libc")] private static extern int mknod(byte* path, uint mode, ulong device);
    [DllImport("libc")] private static extern int chmod(byte* path, uint mode);
    [DllImport("libc")] private static extern int lchown(byte* path, uint uid, uint gid);
    [DllImport("libc")] private static extern int symlink(byte* target, byte* path);
    [DllImport("libc")] private static extern int sethostname(byte* name, nint length);
    [DllImport("libc")] private static extern int setdomainname(byte* name, nint length);
    [DllImport("libc")] private static extern int socket(int domain, int type, int protocol);
    [DllImport("libc")] private static extern int ioctl(int fd, ulong request, byte* argument);
    [DllImport("libc")] private static extern byte* strerror(int errno);
    [DllImport("libc")] private static extern nint sendmsg(int fd, byte* message, int flags);
    [DllImport("libc")] private static extern int dup2(int from, int to);
    [DllImport("libc")] private static extern int pipe2(int* fds, int flags);
    [DllImport("libc")] private static extern int fork();
    [DllImport("libc")] private static extern void _exit(int status);
    [DllImport("libc")] private static extern int setsid();
    [DllImport("libc")] private static extern int kill(int pid, int signal);
    [DllImport("libc")] private static extern int waitpid(int pid, int* status, int options);
    [DllImport("libc")] private static extern int poll(byte* fds, ulong count, int timeout);
    [DllImport("libc")] private static extern int clock_gettime(int clock, long* time);
    [DllImport("libc")] private static extern nint signal(int number, nint handler);

    // The plan, read once; a cursor over it; the failure being reported.
    private static byte* s_cursor, s_end;
    private static bool s_malformed;
    private static byte* s_report;
    private static int s_reportLength;
    // Small buffers for system calls (no stackalloc: it would need the runtime's stack cookie).
    private static byte* s_scratch;
    // After ready in FIFO mode nobody reads the status pipe: failures go to stderr, worded.
    private static bool s_toStderr;
    // Allocated before rlimits apply (a small RLIMIT_AS could refuse them later).
    private static byte* s_line, s_fifoName, s_ptmx, s_candidate, s_hookOutput;
    // What MakeDirectories or MakeFile last failed at (no reference-typed statics here: they
    // would need the runtime's GC statics): false mkdir, true open.
    private static bool s_openFailed;
    private const int ReportSize = 8192, FieldLimit = 2000;

    [UnmanagedCallersOnly(EntryPoint = "main")]
    private static int Main(int argc, byte** argv)
    {
        s_report = malloc(ReportSize);
        s_scratch = malloc(512);
        s_line = malloc(ReportSize + 512);
        s_fifoName = Literal("exec.fifo");
        s_ptmx = Literal("/dev/ptmx");
        s_hookOutput = malloc(HookOutputSize + 1);
        if (s_report == null || s_scratch == null || s_line == null || s_fifoName == null || s_ptmx == null || s_hookOutput == null) return 1;
        // Our /proc/PID (exe: the host's binary; fd: host files) is closed to the container's
        // processes until execve (CVE-2019-5736's class), and the descriptors the parent
        // handed us (posix_spawn's dup2 clears close-on-exec) reach no process we start,
        // hooks included (CVE-2024-21626's class).
        // Nor does any other descriptor above 2 that whoever ran the runtime left open without
        // close-on-exec (a shell's `exec 9<dir`): runc closes them too, unless --preserve-fds.
        if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) return Fail("start", "prctl(PR_SET_DUMPABLE)", null);
        if (syscall(SYS_close_range, ControlFd, 0xFFFFFFFFL, CLOSE_RANGE_CLOEXEC) != 0)
        {
            // Linux before 5.11: one by one, up to the limit a process is given by default.
            for (int fd = ControlFd; fd < 65536; fd++)
            {
                if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0 && Errno() != EBADF) return Fail("start", "fcntl(F_SETFD, FD_CLOEXEC)", null);
            }
        }
        return Run() ? 0 : Report();
    }

    private static bool Run()
    {
        // The plan: a 4-byte length, then the fields StagePlan.WriteFramed writes, in order.
        uint length;
        if (!ReadExactly(ControlFd, (byte*)&length, 4) || length > 16 << 20) return Failed("read plan", "stage plan: no length", null, 0);
        byte* plan = malloc((nint)length + 1);
        if (plan == null || !ReadExactly(ControlFd, plan, (int)length)) return Failed("read plan", "stage plan: truncated", null, 0);
        s_cursor = plan;
        s_end = plan + length;
        if (U32() != PlanVersion) return Failed("read plan", "stage plan: unknown version", null, 0);
        uint flags = U32(), mask = U32(), uid = U32(), gid = U32(), lastCapability = U32();
        ulong bounding = U64(), effective = U64(), permitted = U64(), inheritable = U64(), ambient = U64();
        uint groupCount = U32();
        if (groupCount > 65536) return Failed("read plan", "stage plan: malformed", null, 0);
        uint* groups = (uint*)Bytes(groupCount * 4);
        uint rlimitCount = U32();
        byte* rlimits = s_cursor;
        for (uint i = 0; i < rlimitCount && !s_malformed; i++) { U32(); U64(); U64(); Str(); }
        uint seccompFlags = U32(), seccompLength = U32();
        byte* seccomp = Bytes(seccompLength);
        byte* cwd = Str();
        byte** args = Strings();
        byte** env = Strings();
        byte* path = Str();
        int consoleFd = (int)U32();
        uint rows = U32(), columns = U32();
        // startContainer hooks: path, args, env, timeout in seconds (0: none) each.
        uint hookCount = U32();
        if (hookCount > MaxHooks) return Malformed();
        Hook* hooks = (Hook*)malloc((nint)(hookCount + 1) * sizeof(Hook));
        if (hooks == null) return Failed("read plan", "malloc", null, 12 /* ENOMEM */);
        for (uint i = 0; i < hookCount && !s_malformed; i++)
        {
            hooks[i].Path = Str();
            hooks[i].Args = Strings();
            hooks[i].Env = Strings();
            hooks[i].Timeout = U32();
            if (!s_malformed && (hooks[i].Args == null || hooks[i].Args[0] == null)) s_malformed = true;
        }
        bool exec = (flags & FlagExec) != 0;
        // A create's own section is read (and checked) as CreateContainer goes.
        if (s_malformed || (exec && s_cursor != s_end) || args == null || args[0] == null) return Malformed();
        // The hooks' state JSON names the stage's pid: it follows the plan, framed the same way.
        byte* hookState = null;
        uint hookStateLength = 0;
        if (hookCount > 0)
        {
            if (!ReadExactly(ControlFd, (byte*)&hookStateLength, 4) || hookStateLength > 16 << 20) return Failed("read plan", "hook state: no length", null, 0);
            hookState = malloc((nint)hookStateLength + 1);
            if (hookState == null || !ReadExactly(ControlFd, hookState, (int)hookStateLength)) return Failed("read plan", "hook state: truncated", null, 0);
        }

        byte command;
        if (!ReadExactly(ControlFd, &command, 1) || command != 'G') return false;

        if (exec)
        {
            // The container's own mount namespace: its root and cwd become ours (CLONE_FS
            // unshared first, as setns(2) requires).
            if (unshare(CLONE_FS) != 0) return Failed("join the container's mount namespace", "unshare", null, Errno());
            if (setns(NamespaceFd, CLONE_NEWNS) != 0) return Failed("join the container's mount namespace", "setns(CLONE_NEWNS)", null, Errno());
        }
        else
        {
            // Now that we are in the container's cgroup, it becomes the namespace's root.
            if ((flags & FlagOwnCgroup) != 0 && unshare(CLONE_NEWCGROUP) != 0) return Failed("cgroup namespace", "unshare(CLONE_NEWCGROUP)", null, Errno());
            if (!CreateContainer(flags)) return false;
        }

        // Everything allocated from here on is allocated now, before the rlimits apply.
        s_candidate = malloc(Length(path) + Length(args[0]) + 2);
        if (s_candidate == null) return Failed("rlimits", "malloc", null, 12 /* ENOMEM */);
        s_cursor = rlimits;
        for (uint i = 0; i < rlimitCount; i++)
        {
            ulong* limits = (ulong*)s_scratch;
            int resource = (int)U32();
            limits[0] = U64();
            limits[1] = U64();
            byte* name = Str();
            if (setrlimit(resource, limits) != 0) return Failed("rlimits", "setrlimit", name, Errno());
        }

        // The pty comes from the container's own devpts; its master goes to whoever holds the
        // console socket, the slave becomes the program's terminal just before the exec.
        int tty = -1;
        if ((flags & FlagTerminal) != 0 && (tty = OpenTerminal(consoleFd, rows, columns)) < 0) return false;

        byte* program = Resolve(args[0], path);
        if (program == null) return false;
        if (chdir(cwd) != 0)
        {
            Begin("cwd ", cwd);
            return Finish("chdir", cwd, Errno());
        }

        byte ready = (byte)'R';
        if (write(StatusFd, &ready, 1) != 1) return false;
        if ((flags & FlagStartFifo) != 0)
        {
            // The creator is gone once it has read 'R'; start comes from another process
            // opening exec.fifo for reading, which unblocks this open.
            close(ControlFd);
            close(StatusFd);
            s_toStderr = true;
            int fifo = openat(NamespaceFd, s_fifoName, O_WRONLY | O_CLOEXEC, 0);
            if (fifo < 0) return FailedAt("wait for start", "open", "exec.fifo", Errno());
            byte zero = (byte)'0';
            write(fifo, &zero, 1);
            close(fifo);
        }
        else if (!ReadExactly(ControlFd, &command, 1) || command != 'S')
        {
            return false; // deleted before start
        }

        umask((flags & FlagUmask) != 0 ? mask : 0x12 /* 022 */);
        if (tty >= 0)
        {
            // A session leader since posix_spawn's setsid: the slave becomes its controlling
            // terminal and the program's stdin, stdout and stderr.
            if (ioctl(tty, TIOCSCTTY, null) != 0) return Failed("controlling terminal", "ioctl(TIOCSCTTY)", null, Errno());
            for (int fd = 0; fd <= 2; fd++)
            {
                if (dup2(tty, fd) != fd) return FailedAt("controlling terminal", "dup2", fd == 0 ? "fd 0" : fd == 1 ? "fd 1" : "fd 2", Errno());
            }
            if (tty > 2) close(tty);
        }
        // Seccomp as runc orders it: without no_new_privs the filter needs CAP_SYS_ADMIN, so
        // it goes in before the capabilities are dropped; with it, last before execve.
        bool noNewPrivileges = (flags & FlagNoNewPrivileges) != 0;
        if (seccompLength > 0 && !noNewPrivileges && !SetSeccomp(seccomp, seccompLength, seccompFlags)) return false;

        // The order runc uses: keep capabilities across the uid change, shrink the bounding
        // set, change ids, set the capability sets, raise ambient ones, then no_new_privs.
        const string Credentials = "credentials";
        if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0) return Failed(Credentials, "prctl(PR_SET_KEEPCAPS)", null, Errno());
        for (int cap = 0; cap <= (int)lastCapability; cap++)
        {
            if ((bounding & (1UL << cap)) == 0 && prctl(PR_CAPBSET_DROP, (ulong)cap, 0, 0, 0) != 0)
            {
                return Failed(Credentials, "prctl(PR_CAPBSET_DROP)", null, Errno());
            }
        }
        if (syscall(SYS_setgroups, groupCount, (long)groups, 0) != 0) return Failed(Credentials, "setgroups", null, Errno());
        if (syscall(SYS_setresgid, gid, gid, gid) != 0) return Failed(Credentials, "setresgid", null, Errno());
        if (syscall(SYS_setresuid, uid, uid, uid) != 0) return Failed(Credentials, "setresuid", null, Errno());
        uint* header = (uint*)s_scratch;
        header[0] = 0x20080522; // _LINUX_CAPABILITY_VERSION_3
        header[1] = 0;
        uint* data = (uint*)(s_scratch + 8);
        data[0] = (uint)effective; data[1] = (uint)permitted; data[2] = (uint)inheritable;
        data[3] = (uint)(effective >> 32); data[4] = (uint)(permitted >> 32); data[5] = (uint)(inheritable >> 32);
        if (syscall(SYS_capset, (long)header, (long)data, 0) != 0) return Failed(Credentials, "capset", null, Errno());
        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0) return Failed(Credentials, "prctl(PR_CAP_AMBIENT_CLEAR_ALL)", null, Errno());
        for (int cap = 0; cap <= (int)lastCapability; cap++)
        {
            if ((ambient & (1UL << cap)) != 0 && prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, (ulong)cap, 0, 0) != 0)
            {
                return Failed(Credentials, "prctl(PR_CAP_AMBIENT_RAISE)", null, Errno());
            }
        }
        if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) != 0) return Failed(Credentials, "prctl(PR_SET_KEEPCAPS)", null, Errno());
        if (noNewPrivileges && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return Failed(Credentials, "prctl(PR_SET_NO_NEW_PRIVS)", null, Errno());
        // startContainer hooks where runc runs them: as the container's user, with its
        // capabilities and no_new_privs, before the filter that comes last.
        for (uint i = 0; i < hookCount; i++)
        {
            if (!RunHook(i, hooks + i, hookState, hookStateLength)) return false;
        }
        if (seccompLength > 0 && noNewPrivileges && !SetSeccomp(seccomp, seccompLength, seccompFlags)) return false;

        // The status pipe stays open until the exec succeeds (close-on-exec): a failed exec
        // is still reported, and the parent's EOF means the program runs.
        if ((flags & FlagStartFifo) == 0) close(ControlFd); // else closed at ready
        if (exec || (flags & FlagStartFifo) != 0) close(NamespaceFd);
        execve(program, args, env);
        int errno = Errno();
        Begin("exec ", program);
        return Finish("execve", program, errno);
    }

    // ---- create: the root file system and what else belongs to a new container ----

    /// <summary>
    /// Reads the create section as it goes, each record checked before it is used (a
    /// malformed plan stops at the record that is: the namespace it built in goes with it).
    /// </summary>
    private static bool CreateContainer(uint flags)
    {
        const string Root = "root file system";
        byte* rootfs = Str();
        ulong rootPropagation = U64();
        if (s_malformed) return Malformed();
        // Nothing we mount may propagate back to the host; pivot_root needs the new root to
        // be a mount point.
        byte* slash = Literal("/");
        if (mount(null, slash, null, rootPropagation | MS_REC, null) != 0) return FailedAt(Root, "mount", "/", Errno());
        if (mount(rootfs, rootfs, null, MS_BIND | MS_REC, null) != 0) return Failed(Root, "mount", rootfs, Errno());

        byte* target = malloc(8192);
        byte* hostDevice = malloc(8192);
        if (target == null || hostDevice == null) return Failed(Root, "malloc", null, 12 /* ENOMEM */);
        for (uint i = U32(); i > 0; i--)
        {
            byte* destination = Str(), source = Str(), type = Str();
            ulong mountFlags = U64();
            byte* data = Str();
            uint kind = U32();
            ulong propagation = U64();
            if (s_malformed) return Malformed();
            bool bind = (kind & MountBind) != 0;
            if (!Join(rootfs, destination, target)) return false;
            bool sourceIsFile = bind && IsFile(source);
            if (!(sourceIsFile ? MakeFile(target) : MakeDirectories(target, true))) return Failed(Root, s_openFailed ? "open" : "mkdir", target, Errno());
            if (bind)
            {
                if (mount(source, target, null, MS_BIND | ((kind & MountRecursive) != 0 ? MS_REC : 0), null) != 0) return Failed(Root, "mount", target, Errno());
                // Its flags (ro, nosuid...) only take with a remount of the bind.
                if (mountFlags != 0 && mount(null, target, null, MS_REMOUNT | MS_BIND | mountFlags, null) != 0) return Failed(Root, "mount", target, Errno());
            }
            else if (mount(source, target, type, mountFlags, *data == 0 ? null : data) != 0)
            {
                return Failed(Root, "mount", target, Errno());
            }
            if (propagation != 0 && mount(null, target, null, propagation, null) != 0) return Failed(Root, "mount", target, Errno());
        }
        if (s_malformed) return Malformed();

        // The default devices (bound from the host) and the usual links, when /dev is the spec's.
        byte* devices = Literal("/dev/");
        for (uint i = U32(); i > 0; i--)
        {
            byte* name = Str();
            if (s_malformed) return Malformed();
            Concat(target, rootfs, devices, name);
            if (!Exists(target) && !MakeFile(target)) return Failed(Root, s_openFailed ? "open" : "mkdir", target, Errno());
            Concat(hostDevice, devices, name, null);
            if (mount(hostDevice, target, null, MS_BIND, null) != 0) return Failed(Root, "mount", target, Errno());
        }
        for (uint i = U32(); i > 0; i--)
        {
            byte* link = Str(), to = Str();
            if (s_malformed) return Malformed();
            Concat(target, rootfs, devices, link);
            if (!Exists(target) && !IsLink(target) && symlink(to, target) != 0) return Failed(Root, "symlink", target, Errno());
        }
        for (uint i = U32(); i > 0; i--)
        {
            byte* path = Str();
            uint mode = U32(), major = U32(), minor = U32(), uid = U32(), gid = U32();
            if (s_malformed) return Malformed();
            if (!Join(rootfs, path, target)) return false;
            if (!MakeDirectories(target, false)) return Failed(Root, s_openFailed ? "open" : "mkdir", target, Errno());
            ulong device = ((ulong)(major & 0xfffff000) << 32) | ((ulong)(major & 0xfff) << 8) | ((ulong)(minor & 0xffffff00) << 12) | (minor & 0xff);
            if (mknod(target, mode, device) != 0)
            {
                if (Errno() == EEXIST) continue; // already there (a /dev that is not a fresh tmpfs), as runc accepts
                return Failed(Root, "mknod", target, Errno());
            }
            if (chmod(target, mode & 0xFFF) != 0) return Failed(Root, "chmod", target, Errno());
            if (lchown(target, uid, gid) != 0) return Failed(Root, "lchown", target, Errno());
        }
        if (s_malformed) return Malformed();

        if ((flags & FlagPauseForHooks) != 0)
        {
            // prestart/createRuntime/createContainer hooks run now, while the container's
            // namespaces exist and its root is not yet pivoted into.
            byte pause = (byte)'H', answer;
            if (write(StatusFd, &pause, 1) != 1 || !ReadExactly(ControlFd, &answer, 1) || answer != 'h')
            {
                return Failed(Root, "the runtime gave up during the hooks", null, 0);
            }
        }

        // pivot_root(".", ".") stacks the old root under the new one; detaching it leaves
        // only the container's tree (the trick runc and crun use, pivot_root(2) NOTES).
        byte* dot = Literal(".");
        if (chdir(rootfs) != 0) return Failed(Root, "chdir", rootfs, Errno());
        if (syscall(SYS_pivot_root, (long)dot, (long)dot, 0) != 0) return Failed(Root, "pivot_root", rootfs, Errno());
        if (umount2(dot, MNT_DETACH) != 0) return Failed(Root, "umount2", dot, Errno());
        if (chdir(slash) != 0) return FailedAt(Root, "chdir", "/", Errno());

        byte* tmpfs = Literal("tmpfs"), empty = Literal("size=0"), devNull = Literal("/dev/null");
        for (uint i = U32(); i > 0; i--)
        {
            byte* path = Str();
            if (s_malformed) return Malformed();
            if (!Exists(path)) continue;
            int result = IsDirectory(path)
                ? mount(tmpfs, path, tmpfs, MS_RDONLY, empty)
                : mount(devNull, path, null, MS_BIND, null);
            if (result != 0) return Failed(Root, "mount", path, Errno());
        }
        for (uint i = U32(); i > 0; i--)
        {
            byte* path = Str();
            if (s_malformed) return Malformed();
            if (!Exists(path)) continue;
            if (mount(path, path, null, MS_BIND | MS_REC, null) != 0
                || mount(null, path, null, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, null) != 0)
            {
                return Failed(Root, "mount", path, Errno());
            }
        }
        if (s_malformed) return Malformed();
        if ((flags & FlagReadonlyRoot) != 0 && mount(null, slash, null, MS_REMOUNT | MS_BIND | MS_RDONLY, null) != 0)
        {
            return FailedAt(Root, "mount", "/", Errno());
        }

        byte* hostname = Str(), domainname = Str();
        if (s_malformed) return Malformed();
        if (*hostname != 0 && sethostname(hostname, Length(hostname)) != 0) return Failed("hostname", "sethostname", hostname, Errno());
        if (*domainname != 0 && setdomainname(domainname, Length(domainname)) != 0) return Failed("hostname", "setdomainname", domainname, Errno());
        if ((flags & FlagOwnNetwork) != 0 && !LoopbackUp()) return false;
        for (uint i = U32(); i > 0; i--)
        {
            byte* path = Str(), value = Str();
            if (s_malformed) return Malformed();
            if (!WriteFile(path, value)) return Failed("sysctl", "write", path, Errno());
        }
        byte* oomScoreAdj = Str();
        if (s_malformed || s_cursor != s_end) return Malformed();
        if (*oomScoreAdj != 0 && !WriteFile(Literal("/proc/self/oom_score_adj"), oomScoreAdj)) return FailedAt("sysctl", "write", "/proc/self/oom_score_adj", Errno());
        return true;
    }

    /// <summary>
    /// ROOTFS + DEST into <paramref name="into"/> without ever following a symbolic link
    /// inside the container's tree: a hostile image could otherwise point a mount
    /// destination at the host ("/etc" -> host). A symlink on the way, "." or "..", is an error.
    /// </summary>
    private static bool Join(byte* rootfs, byte* destination, byte* into)
    {
        int n = Length(rootfs);
        if (n + Length(destination) + 2 > 8192) return Failed("root file system", "mount destination too long", null, 0);
        Copy(into, rootfs, n);
        int rootLength = n;
        bool gone = false; // a missing component: nothing below it exists (yet) to be a link
        for (byte* p = destination; *p != 0;)
        {
            while (*p == '/') p++;
            if (*p == 0) break;
            byte* component = p;
            while (*p != 0 && *p != '/') p++;
            int length = (int)(p - component);
            if ((length == 1 && component[0] == '.') || (length == 2 && component[0] == '.' && component[1] == '.'))
            {
                Begin("root file system", null);
                Put("mount destination '"); Put(destination); Put("' must not contain '"); Put(length == 1 ? "." : ".."); Put("'");
                return Finish(null, null, 0);
            }
            into[n++] = (byte)'/';
            Copy(into + n, component, length);
            n += length;
            into[n] = 0;
            if (!gone && lstat(into, s_scratch + 64) != 0) gone = true;
            else if (!gone && (*(uint*)(s_scratch + 64 + 24) & S_IFMT) == S_IFLNK)
            {
                Begin("root file system", null);
                Put("mount destination '"); Put(destination); Put("': '"); Put(into + rootLength); Put("' is a symbolic link in the container's tree");
                return Finish(null, null, 0);
            }
        }
        into[n] = 0;
        return true;
    }

    /// <summary>mkdir -p of <paramref name="path"/> (with <paramref name="last"/>) or of its parent.</summary>
    private static bool MakeDirectories(byte* path, bool last)
    {
        int n = Length(path);
        for (int i = 1; i <= n; i++)
        {
            if (i < n && path[i] != '/') continue;
            if (i == n && !last) break;
            byte saved = path[i];
            path[i] = 0;
            int result = mkdir(path, 0x1FF /* 0777, less the umask */);
            int errno = Errno();
            path[i] = saved;
            if (result != 0 && errno != EEXIST)
            {
                s_openFailed = false;
                *__errno_location() = errno;
                return false;
            }
        }
        if (last && !IsDirectory(path))
        {
            s_openFailed = false;
            *__errno_location() = 20; // ENOTDIR
            return false;
        }
        return true;
    }

    /// <summary>An empty file at <paramref name="path"/> unless something is there (its parent made first).</summary>
    private static bool MakeFile(byte* path)
    {
        if (Exists(path)) return true;
        if (!MakeDirectories(path, false)) return false;
        int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0x1B6 /* 0666, less the umask */);
        if (fd < 0)
        {
            s_openFailed = true;
            return false;
        }
        close(fd);
        return true;
    }

    private static bool WriteFile(byte* path, byte* text)
    {
        int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC, 0);
        if (fd < 0) return false;
        int length = Length(text);
        bool ok = write(fd, text, length) == length;
        int errno = Errno();
        close(fd);
        *__errno_location() = errno;
        return ok;
    }

    private static bool LoopbackUp()
    {
        // struct ifreq: char ifr_name[16]; short ifr_flags at 16 (40 bytes in all).
        byte* ifreq = s_scratch + 256;
        for (int i = 0; i < 40; i++) ifreq[i] = 0;
        ifreq[0] = (byte)'l';
        ifreq[1] = (byte)'o';
        int fd = socket(2 /* AF_INET */, 2 /* SOCK_DGRAM */ | O_CLOEXEC, 0);
        if (fd < 0) return FailedAt("hostname", "socket", "lo", Errno());
        string failed = null;
        if (ioctl(fd, 0x8913, ifreq) != 0) failed = "ioctl(SIOCGIFFLAGS)";
        else
        {
            *(short*)(ifreq + 16) |= 1; // IFF_UP
            if (ioctl(fd, 0x8914, ifreq) != 0) failed = "ioctl(SIOCSIFFLAGS)";
        }
        int errno = Errno();
        close(fd);
        return failed == null || FailedAt("hostname", failed, "lo", errno);
    }

    private static bool Exists(byte* path) => stat(path, s_scratch + 64) == 0;

    private static bool IsLink(byte* path) => lstat(path, s_scratch + 64) == 0 && (*(uint*)(s_scratch + 64 + 24) & S_IFMT) == S_IFLNK;

    private static bool IsDirectory(byte* path) => stat(path, s_scratch + 64) == 0 && (*(uint*)(s_scratch + 64 + 24) & S_IFMT) == S_IFDIR;

    /// <summary>File.Exists: there, and not a directory (links followed).</summary>
    private static bool IsFile(byte* path) => stat(path, s_scratch + 64) == 0 && (*(uint*)(s_scratch + 64 + 24) & S_IFMT) != S_IFDIR;

    /// <summary>A + B (+ C, when given) into <paramref name="into"/>, NUL-terminated.</summary>
    private static void Concat(byte* into, byte* a, byte* b, byte* c)
    {
        int n = 0;
        for (; *a != 0; a++) into[n++] = *a;
        for (; *b != 0; b++) into[n++] = *b;
        for (; c != null && *c != 0; c++) into[n++] = *c;
        into[n] = 0;
    }

    private static bool SetSeccomp(byte* filter, uint length, uint flags)
    {
        byte* program = s_scratch;
        *(ushort*)program = (ushort)(length / 8);
        *(byte**)(program + 8) = filter;
        if (syscall(SYS_seccomp, 1 /* SECCOMP_SET_MODE_FILTER */, flags, (long)program) < 0)
        {
            return Failed("seccomp", "seccomp(SECCOMP_SET_MODE_FILTER)", null, Errno());
        }
        return true;
    }

    /// <summary>
    /// A pty from the container's /dev/ptmx: the master, unlocked and sized, is sent over
    /// the console socket (SCM_RIGHTS, runc's console socket protocol: one descriptor with a
    /// short name) and closed here; the slave, opened through the master (TIOCGPTPEER: no
    /// path lookup in a tree the image controls), is returned, or -1 with the failure recorded.
    /// </summary>
    private static int OpenTerminal(int consoleFd, uint rows, uint columns)
    {
        const string Terminal = "terminal";
        byte* ptmx = s_ptmx;
        int master = open(ptmx, O_RDWR | O_NOCTTY | O_CLOEXEC, 0);
        if (master < 0)
        {
            FailedAt(Terminal, "open", "/dev/ptmx", Errno());
            return -1;
        }
        int slave = -1;
        string failed = null;
        int* unlock = (int*)s_scratch;
        *unlock = 0;
        if (ioctl(master, TIOCSPTLCK, (byte*)unlock) != 0) failed = "ioctl(TIOCSPTLCK)";
        else if ((slave = ioctl(master, TIOCGPTPEER, (byte*)(nint)(O_RDWR | O_NOCTTY | O_CLOEXEC))) < 0) failed = "ioctl(TIOCGPTPEER)";
        else if (rows > 0 && columns > 0)
        {
            ushort* size = (ushort*)s_scratch; // struct winsize: rows, columns, two unused
            size[0] = (ushort)rows;
            size[1] = (ushort)columns;
            size[2] = 0;
            size[3] = 0;
            if (ioctl(master, TIOCSWINSZ, (byte*)size) != 0) failed = "ioctl(TIOCSWINSZ)";
        }
        if (failed == null)
        {
            // struct msghdr (56 bytes) at 0, its one iovec at 64, the control message at 96:
            // cmsg_len = CMSG_LEN(sizeof(int)), SOL_SOCKET, SCM_RIGHTS, the descriptor.
            byte* m = s_scratch;
            for (int i = 0; i < 128; i++) m[i] = 0;
            *(byte**)(m + 64) = ptmx;
            *(ulong*)(m + 72) = 9; // "/dev/ptmx"
            *(ulong*)(m + 96) = 20;
            *(int*)(m + 104) = 1;
            *(int*)(m + 108) = 1;
            *(int*)(m + 112) = master;
            *(byte**)(m + 16) = m + 64;
            *(ulong*)(m + 24) = 1;
            *(byte**)(m + 32) = m + 96;
            *(ulong*)(m + 40) = 24;
            if (sendmsg(consoleFd, m, 0x4000 /* MSG_NOSIGNAL */) < 0) failed = "sendmsg(SCM_RIGHTS)";
        }
        int errno = Errno();
        close(master);
        close(consoleFd);
        if (failed == null) return slave;
        if (slave >= 0) close(slave);
        FailedAt(Terminal, failed, "/dev/ptmx", errno);
        return -1;
    }

    /// <summary>
    /// startContainer hook number <paramref name="index"/>, inside the container before the
    /// program (runtime-spec config.md, "POSIX-platform Hooks"): a child in a session of its
    /// own with the state JSON on stdin and its stdout and stderr captured (the first
    /// HookOutputSize bytes); killed after its timeout, if it has one. A hook that cannot be
    /// started, fails or times out fails the container, its output in the message.
    /// </summary>
    private static bool RunHook(uint index, Hook* hook, byte* state, uint stateLength)
    {
        byte* path = hook->Path;
        uint timeout = hook->Timeout;
        const string Hooks = "startContainer hooks";
        int* fds = (int*)(s_scratch + 256); // stdin 0-1, output 2-3, exec report 4-5
        for (int i = 0; i < 6; i += 2)
        {
            if (pipe2(fds + i, O_CLOEXEC) != 0) return Failed(Hooks, "pipe2", path, Errno());
        }
        // Writing to a hook that stopped reading must be an error here, not our death.
        signal(SIGPIPE, 1 /* SIG_IGN */);
        int pid = fork();
        if (pid == 0)
        {
            // The child: nothing but async-signal-safe calls until execve, as after any fork.
            signal(SIGPIPE, 0 /* SIG_DFL */);
            // (A failed dup2 or setsid, which cannot happen with these descriptors, would be
            // reported as the execve's failure, with their errno.)
            if (dup2(fds[0], 0) == 0 && dup2(fds[3], 1) == 1 && dup2(fds[3], 2) == 2 && setsid() >= 0) execve(path, hook->Args, hook->Env);
            int failure = Errno();
            write(fds[5], (byte*)&failure, 4);
            _exit(127);
        }
        int forkErrno = Errno();
        close(fds[0]);
        close(fds[3]);
        close(fds[5]);
        if (pid < 0)
        {
            close(fds[1]);
            close(fds[2]);
            close(fds[4]);
            signal(SIGPIPE, 0);
            return Failed(Hooks, "fork", path, forkErrno);
        }
        // The exec report: EOF once execve succeeded (close-on-exec), else its errno.
        int execErrno = 0;
        bool execFailed = ReadExactly(fds[4], (byte*)&execErrno, 4);
        close(fds[4]);

        int input = fds[1], output = fds[2];
        fcntl(input, F_SETFL, O_NONBLOCK);
        uint written = 0, captured = 0;
        int status = 0;
        bool timedOut = false;
        long deadline = timeout == 0 ? 0x7FFFFFFFFFFFFFFF : Milliseconds() + timeout * 1000L;
        short* pollFds = (short*)(s_scratch + 320); // struct pollfd[2]: int fd, short events, short revents
        int waitErrno = 0;
        while (true)
        {
            int reaped = waitpid(pid, &status, WNOHANG);
            if (reaped == pid) break;
            if (reaped < 0 && Errno() != EINTR)
            {
                waitErrno = Errno();
                kill(pid, SIGKILL);
                break;
            }
            if (Milliseconds() > deadline)
            {
                kill(-pid, SIGKILL); // its session's group: what it started goes too
                kill(pid, SIGKILL);
                waitpid(pid, &status, 0);
                timedOut = true;
                break;
            }
            *(int*)pollFds = output;  // a negative fd is skipped by poll
            pollFds[2] = POLLIN;
            *(int*)(pollFds + 4) = input;
            pollFds[6] = POLLOUT;
            pollFds[3] = pollFds[7] = 0;
            // The end of the hook wakes the poll through its output's hang-up, unless a child
            // of its own keeps that open: then its exit is seen at the next look.
            poll((byte*)pollFds, 2, output >= 0 ? 20 : 10);
            if (output >= 0 && pollFds[3] != 0) Capture(&output, &captured);
            if (input >= 0 && pollFds[7] != 0)
            {
                nint n = stateLength > written ? write(input, state + written, (nint)(stateLength - written)) : 0;
                if (n > 0) written += (uint)n;
                if (written >= stateLength || (n < 0 && Errno() != EAGAIN && Errno() != EINTR))
                {
                    close(input); // all of it, or the hook closed its stdin: it need not read it
                    input = -1;
                }
            }
        }
        if (input >= 0) close(input);
        // What the hook wrote before it ended is in the pipe; a child of its own that still
        // holds the pipe is not waited for.
        if (output >= 0)
        {
            fcntl(output, F_SETFL, O_NONBLOCK);
            for (int reads = 0; reads < 64 && Capture(&output, &captured); reads++) { }
            if (output >= 0) close(output);
        }
        signal(SIGPIPE, 0 /* SIG_DFL */);

        if (!execFailed && waitErrno == 0 && !timedOut && (status & 0x7f) == 0 && ((status >> 8) & 0xff) == 0) return true;
        Begin(Hooks, null);
        Put("startContainer hook "); PutNumber((int)index); Put(" ("); Put(path); Put("): ");
        if (execFailed) return Finish("execve", path, execErrno);
        if (waitErrno != 0) return Finish("waitpid", path, waitErrno);
        if (timedOut) { Put("killed after its timeout of "); PutNumber((int)timeout); Put(" s"); }
        else if ((status & 0x7f) == 0) { Put("exit code "); PutNumber((status >> 8) & 0xff); }
        else { Put("killed by signal "); PutNumber(status & 0x7f); }
        // Its output, trimmed, NULs (which the report's fields cannot hold) as spaces.
        byte* text = s_hookOutput;
        uint start = 0, end = captured;
        while (start < end && IsSpace(text[start])) start++;
        while (end > start && IsSpace(text[end - 1])) end--;
        if (end > start)
        {
            Put(": ");
            for (uint i = start; i < end; i++) PutByte(text[i] == 0 ? (byte)' ' : text[i]);
        }
        return Finish(null, null, 0);
    }

    /// <summary>One read of a hook's output into s_hookOutput (beyond its size: read and dropped); false at EOF or when nothing is there.</summary>
    private static bool Capture(int* output, uint* captured)
    {
        byte* chunk = s_line; // free until a report is written out
        nint n = read(*output, chunk, 4096);
        if (n > 0)
        {
            for (nint i = 0; i < n && *captured < HookOutputSize; i++) s_hookOutput[(*captured)++] = chunk[i];
            return true;
        }
        if (n < 0 && (Errno() == EAGAIN || Errno() == EINTR)) return false;
        close(*output); // EOF (or an error: nothing more will come)
        *output = -1;
        return false;
    }

    private static bool IsSpace(byte b) => b == ' ' || b == '\n' || b == '\r' || b == '\t';

    private static long Milliseconds()
    {
        long* time = (long*)(s_scratch + 480); // struct timespec
        clock_gettime(1 /* CLOCK_MONOTONIC */, time);
        return time[0] * 1000 + time[1] / 1000000;
    }

    /// <summary>A startContainer hook of the plan: its strings point into the plan.</summary>
    private struct Hook
    {
        public byte* Path;
        public byte** Args, Env;
        public uint Timeout;
    }

    private static bool Malformed() => Failed("read plan", "stage plan: malformed", null, 0);

    /// <summary>args[0] as execvp would find it in <paramref name="path"/> (the container's PATH): a file, not a directory.</summary>
    private static byte* Resolve(byte* program, byte* path)
    {
        for (byte* c = program; *c != 0; c++)
        {
            if (*c == '/') return program;
        }
        int programLength = Length(program);
        byte* candidate = s_candidate;
        for (byte* dir = path; *dir != 0;)
        {
            byte* next = dir;
            while (*next != 0 && *next != ':') next++;
            if (next != dir)
            {
                int n = (int)(next - dir);
                Copy(candidate, dir, n);
                candidate[n] = (byte)'/';
                Copy(candidate + n + 1, program, programLength + 1);
                if (IsFile(candidate)) return candidate;
            }
            dir = *next == 0 ? next : next + 1;
        }
        // 'sh' is not in the container's PATH (/bin): the program and where it was looked for.
        Begin("process", null);
        Put("'"); Put(program); Put("' is not in the container's PATH ("); Put(path); Put(")");
        Finish(null, null, 0);
        return null;
    }

    // ---- the failure report: 'E', step, NUL, operation, NUL, target, NUL, errno in decimal ----

    private static bool Failed(string step, string operation, byte* target, int errno)
    {
        Begin(step, null);
        return Finish(operation, target, errno);
    }

    private static bool FailedAt(string step, string operation, string target, int errno)
    {
        Begin(step, null);
        Put(operation);
        PutByte(0);
        Put(target);
        PutByte(0);
        PutNumber(errno);
        return false;
    }

    private static int Fail(string step, string operation, byte* target)
    {
        Failed(step, operation, target, Errno());
        return Report();
    }

    /// <summary>Starts a report: 'E' and the step (a name and, when given, what it was about).</summary>
    private static void Begin(string step, byte* about)
    {
        s_reportLength = 0;
        Put("E");
        Put(step);
        if (about != null) Put(about);
        PutByte(0);
    }

    /// <summary>Ends a report: the operation (or, with errno 0, the whole message), its target, errno.</summary>
    private static bool Finish(string operation, byte* target, int errno)
    {
        if (operation != null) Put(operation);
        PutByte(0);
        if (target != null) Put(target);
        PutByte(0);
        PutNumber(errno);
        return false;
    }

    private static int Report()
    {
        if (!s_toStderr)
        {
            write(StatusFd, s_report, s_reportLength);
            return 1;
        }
        // 'E', step, NUL, operation, NUL, target, NUL, errno: "hostos container init: step: operation 'target': message".
        byte* line = s_line;
        int n = 0;
        byte* part = s_report + 1;
        byte* end = s_report + s_reportLength;
        byte* step = part, operation = Next(step, end), target = Next(operation, end), number = Next(target, end);
        int errno = 0;
        for (byte* d = number; d < end && *d >= '0' && *d <= '9'; d++) errno = errno * 10 + (*d - '0');
        n = Append(line, n, "hostos container init: ");
        n = Append(line, n, step);
        n = Append(line, n, ": ");
        n = Append(line, n, operation);
        if (*target != 0)
        {
            n = Append(line, n, " '");
            n = Append(line, n, target);
            n = Append(line, n, "'");
        }
        if (errno != 0)
        {
            n = Append(line, n, ": ");
            n = Append(line, n, strerror(errno));
        }
        line[n++] = (byte)'\n';
        write(2, line, n);
        return 1;
    }

    /// <summary>The string after <paramref name="s"/>'s NUL (or the end).</summary>
    private static byte* Next(byte* s, byte* end)
    {
        while (s < end && *s != 0) s++;
        return s < end ? s + 1 : end;
    }

    /// <summary>A field of the report (NUL-terminated within it: Put caps each field) or a libc string.</summary>
    private static int Append(byte* to, int at, byte* text)
    {
        for (; *text != 0 && at < ReportSize + 500; text++) to[at++] = *text;
        return at;
    }

    private static int Append(byte* to, int at, string text)
    {
        fixed (char* c = text)
        {
            for (int i = 0; i < text.Length && at < ReportSize + 500; i++) to[at++] = (byte)c[i];
        }
        return at;
    }

    /// <summary>An ASCII literal as a C string (in a buffer of its own: literals are few and short).</summary>
    private static byte* Literal(string text)
    {
        byte* c = malloc(text.Length + 1);
        fixed (char* t = text)
        {
            for (int i = 0; i < text.Length; i++) c[i] = (byte)t[i];
        }
        c[text.Length] = 0;
        return c;
    }

    private static void Put(string text)
    {
        fixed (char* c = text)
        {
            for (int i = 0; i < text.Length && i < FieldLimit; i++) PutByte((byte)c[i]);
        }
    }

    /// <summary>A C string, at most FieldLimit bytes of it: the report's four fields always fit.</summary>
    private static void Put(byte* text)
    {
        for (int i = 0; text[i] != 0 && i < FieldLimit; i++) PutByte(text[i]);
    }

    private static void PutByte(byte b)
    {
        if (s_reportLength < ReportSize) s_report[s_reportLength++] = b;
    }

    private static void PutNumber(int n)
    {
        byte* digits = s_scratch + 448;
        int count = 0;
        uint v = (uint)n;
        do { digits[count++] = (byte)('0' + v % 10); v /= 10; } while (v != 0);
        while (count > 0) PutByte(digits[--count]);
    }

    // ---- the plan ----

    private static uint U32()
    {
        if (s_cursor + 4 > s_end) { s_malformed = true; return 0; }
        uint v = *(uint*)s_cursor;
        s_cursor += 4;
        return v;
    }

    private static ulong U64()
    {
        if (s_cursor + 8 > s_end) { s_malformed = true; return 0; }
        ulong v = *(ulong*)s_cursor;
        s_cursor += 8;
        return v;
    }

    private static byte* Bytes(uint count)
    {
        if (count > s_end - s_cursor) { s_malformed = true; return null; }
        byte* start = s_cursor;
        s_cursor += count;
        return start;
    }

    /// <summary>A length, the bytes, a NUL: used where it lies, as a C string.</summary>
    private static byte* Str()
    {
        uint length = U32();
        if (s_malformed || length >= s_end - s_cursor) { s_malformed = true; return null; }
        byte* s = Bytes(length + 1);
        if (s == null || s[length] != 0) { s_malformed = true; return null; }
        return s;
    }

    /// <summary>A count, then that many strings: a NULL-terminated array, as execve wants.</summary>
    private static byte** Strings()
    {
        uint count = U32();
        if (count > 1 << 20) { s_malformed = true; return null; }
        byte** list = (byte**)malloc((nint)(count + 1) * sizeof(byte*));
        if (list == null) { s_malformed = true; return null; }
        for (uint i = 0; i < count; i++) list[i] = Str();
        list[count] = null;
        return list;
    }

    // ---- libc ----

    private static bool ReadExactly(int fd, byte* buffer, int count)
    {
        while (count > 0)
        {
            nint n = read(fd, buffer, count);
            if (n <= 0)
            {
                if (n < 0 && Errno() == EINTR) continue;
                return false;
            }
            buffer += n;
            count -= (int)n;
        }
        return true;
    }

    private static int Errno() => *__errno_location();

    private static int Length(byte* s)
    {
        int n = 0;
        while (s[n] != 0) n++;
        return n;
    }

    private static void Copy(byte* to, byte* from, int count)
    {
        for (int i = 0; i < count; i++) to[i] = from[i];
    }
}
