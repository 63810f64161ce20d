// hostos-runc's front (docs/containers.md, "The front"): what /usr/bin/hostos-runc is on
// HostOS. hostos-init links the runtime and is already running, so a command it can serve
// costs a warm call instead of a .NET runtime's start (~25k distinct instructions, which
// QEMU's TCG translates again in every new process). The front connects to PID 1's socket,
// sends its arguments with its stdin, stdout and stderr (SCM_RIGHTS), and then only relays:
// the signals runc forwards, one way; the command's exit code (or, for a signal the command
// does not pass on, 'D': take its default action), the other. hostos-init
// decides what it serves and answers 'A' (served) or 'F' and why not; then, and whenever
// the socket is not there or the arguments do not fit, the front becomes the runtime run in
// the caller's process, /usr/lib/hostos/hostos-runc, by execv with the same arguments,
// environment and signal mask it started with. Nothing has happened yet on that path.
//
// Written like hostos-stage (Stage.cs, against CoreLib.cs, no .NET runtime): value types,
// pointers and libc only; no objects, no exceptions, no stackalloc.
using System.Runtime.InteropServices;

[module: System.Runtime.CompilerServices.SkipLocalsInit]

namespace HostOs.RuncFront;

internal static unsafe class Front
{
    private const int AF_UNIX = 1, SOCK_SEQPACKET = 5, SOCK_CLOEXEC = 0x80000, SFD_CLOEXEC = 0x80000;
    private const int SOL_SOCKET = 1, SCM_RIGHTS = 1, MSG_NOSIGNAL = 0x4000, POLLIN = 1, EINTR = 4;
    private const int SIG_BLOCK = 0, SIG_SETMASK = 2;
    private const int RequestLimit = 65536;

    [DllImport("libc")] private static extern int socket(int domain, int type, int protocol);
    [DllImport("libc")] private static extern int connect(int fd, byte* address, int length);
    [DllImport("libc")] private static extern nint sendmsg(int fd, byte* message, int flags);
    [DllImport("libc")] private static extern nint send(int fd, byte* buffer, nint length, int flags);
    [DllImport("libc")] private static extern nint recv(int fd, byte* buffer, nint length, int flags);
    [DllImport("libc")] private static extern nint read(int fd, byte* buffer, nint count);
    [DllImport("libc")] private static extern nint write(int fd, byte* buffer, nint count);
    [DllImport("libc")] private static extern int close(int fd);
    [DllImport("libc")] private static extern int poll(byte* fds, ulong count, int timeout);
    [DllImport("libc")] private static extern int sigprocmask(int how, byte* set, byte* old);
    [DllImport("libc")] private static extern int signalfd(int fd, byte* mask, int flags);
    [DllImport("libc")] private static extern int execv(byte* path, byte** argv);
    [DllImport("libc")] private static extern int setenv(byte* name, byte* value, int overwrite);
    [DllImport("libc")] private static extern byte* malloc(nint size);
    [DllImport("libc")] private static extern byte* strerror(int errno);
    [DllImport("libc")] private static extern int* __errno_location();
    [DllImport("libc")] private static extern int fork();
    [DllImport("libc")] private static extern void _exit(int status);
    [DllImport("libc")] private static extern int getpid();
    [DllImport("libc")] private static extern int getppid();
    [DllImport("libc")] private static extern int waitpid(int pid, int* status, int options);
    [DllImport("libc")] private static extern int pipe2(int* fds, int flags);
    [DllImport("libc")] private static extern int usleep(uint microseconds);
    [DllImport("libc")] private static extern int fcntl(int fd, int command, int argument);
    [DllImport("libc")] private static extern nint signal(int number, nint handler);
    [DllImport("libc")] private static extern int kill(int pid, int signal);

    // The signals relayed (sigset_t, 128 bytes), and the mask we started with.
    private static byte* s_mask, s_oldMask;
    private static bool s_masked;

    [UnmanagedCallersOnly(EntryPoint = "main")]
    private static int Main(int argc, byte** argv)
    {
        s_mask = malloc(128);
        s_oldMask = malloc(128);
        if (s_mask == null || s_oldMask == null) return 1;
        for (int i = 0; i < 128; i++) s_mask[i] = 0;
        // Those runc's run and exec pass on to the container (HUP INT QUIT USR1 USR2 TERM),
        // and WINCH for a terminal's size.
        AddSignal(1);
        AddSignal(2);
        AddSignal(3);
        AddSignal(10);
        AddSignal(12);
        AddSignal(15);
        AddSignal(28);
        // Blocked from the start, so none is lost between the answer and the relay; given
        // back before execv, so the runtime in the caller's process starts as we did.
        if (sigprocmask(SIG_BLOCK, s_mask, s_oldMask) != 0) return RunHere(argv, (byte*)null);
        s_masked = true;
        // A closed stdio descriptor would be the lowest free number, the socket's below: the
        // container would get our connection as its stdin or stdout.
        for (int fd = 0; fd <= 2; fd++)
        {
            if (fcntl(fd, 1 /* F_GETFD */, 0) < 0) return RunHere(argv, "a stdio descriptor is closed");
        }

        int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        if (s < 0) return RunHere(argv, (byte*)null);
        byte* address = malloc(110);
        byte* request = malloc(RequestLimit);
        if (address == null || request == null) return RunHere(argv, (byte*)null);
        // struct sockaddr_un: the family, then the path.
        *(ushort*)address = AF_UNIX;
        int pathLength = Copy(address + 2, 0, "/run/hostos/runc.sock");
        address[2 + pathLength] = 0;
        if (connect(s, address, 2 + pathLength + 1) != 0)
        {
            close(s);
            return RunHere(argv, (byte*)null); // no hostos-init serving: not HostOS's PID 1, or too early
        }

        // The request: a header line, the pid that adopts our orphans, then each argument
        // after argv[0], NUL-terminated.
        int n = Copy(request, 0, "hostos-runc 1\n");
        n = Number(request, n, MayLeaveAProcess(argc, argv) ? OrphansGoTo() : 0);
        request[n++] = (byte)'\n';
        for (int i = 1; i < argc; i++)
        {
            for (byte* a = argv[i]; *a != 0; a++)
            {
                if (n >= RequestLimit - 1) return Refused(s, argv, "the arguments are too long to send to hostos-init");
                request[n++] = *a;
            }
            if (n >= RequestLimit) return Refused(s, argv, "the arguments are too long to send to hostos-init");
            request[n++] = 0;
        }
        if (!SendWithStdio(s, request, n)) return Refused(s, argv, (byte*)null);

        byte* reply = request;
        nint r;
        do r = recv(s, reply, 4095, 0);
        while (r < 0 && Errno() == EINTR);
        if (r <= 0) return Refused(s, argv, "hostos-init did not answer");
        if (reply[0] == (byte)'F')
        {
            reply[r] = 0;
            return Refused(s, argv, reply + 1);
        }
        if (reply[0] != (byte)'A' || r != 1) return Refused(s, argv, "hostos-init's answer is not understood");
        return Relay(s, reply);
    }

    /// <summary>
    /// Who adopts a process we leave behind: 1 unless an ancestor of ours is a subreaper (a
    /// shim that waits for the container runc's create leaves it), found the only way a
    /// process can: a grandchild orphaned on purpose says who its new parent is. 0 when that
    /// cannot be found out. hostos-init serves create and --detach only for 1.
    /// </summary>
    private static int OrphansGoTo()
    {
        int* fds = (int*)malloc(8);
        if (fds == null || pipe2(fds, 0x80000 /* O_CLOEXEC */) != 0) return 0;
        int child = fork();
        if (child == 0)
        {
            int parent = getpid();
            int grandchild = fork();
            if (grandchild != 0) _exit(0);
            while (getppid() == parent) usleep(100);
            int adopter = getppid();
            write(fds[1], (byte*)&adopter, 4);
            _exit(0);
        }
        close(fds[1]);
        int result = 0;
        if (child > 0)
        {
            int status;
            while (waitpid(child, &status, 0) < 0 && Errno() == EINTR) { }
            int adopter;
            nint r;
            do r = read(fds[0], (byte*)&adopter, 4);
            while (r < 0 && Errno() == EINTR);
            if (r == 4) result = adopter;
        }
        close(fds[0]);
        return result;
    }

    /// <summary>
    /// Whether the command could be create, run -d or exec -d, which need <see cref="OrphansGoTo"/>:
    /// any argument "create" or starting with "-d" or "--d". Only a guess made without parsing,
    /// but a safe one: a miss sends 0, and hostos-init does not serve those commands on 0.
    /// Spares the two forks on the start path of everything else (run, exec, start, state...).
    /// </summary>
    private static bool MayLeaveAProcess(int argc, byte** argv)
    {
        for (int i = 1; i < argc; i++)
        {
            byte* a = argv[i];
            if (a[0] == (byte)'-' && (a[1] == (byte)'d' || (a[1] == (byte)'-' && a[2] == (byte)'d'))) return true;
            if (Equals(a, "create")) return true;
        }
        return false;
    }

    private static bool Equals(byte* a, string text)
    {
        fixed (char* c = text)
        {
            for (int i = 0; i < text.Length; i++)
            {
                if (a[i] != (byte)c[i]) return false;
            }
        }
        return a[text.Length] == 0;
    }

    private static int Number(byte* to, int at, int value)
    {
        if (value < 0) value = 0;
        byte* digits = to + at + 16; // scratch past where the number goes
        int count = 0;
        do { digits[count++] = (byte)('0' + value % 10); value /= 10; } while (value != 0);
        while (count > 0) to[at++] = digits[--count];
        return at;
    }

    private static void AddSignal(int signal) => s_mask[(signal - 1) / 8] |= (byte)(1 << ((signal - 1) % 8));

    /// <summary>The served command runs in hostos-init: signals go to it, its exit code comes back.</summary>
    private static int Relay(int s, byte* buffer)
    {
        int signals = signalfd(-1, s_mask, SFD_CLOEXEC);
        // Without a signalfd nothing is relayed: signals act on us as they did before.
        if (signals < 0) sigprocmask(SIG_SETMASK, s_oldMask, null);
        // struct pollfd[2]: fd, events, revents.
        byte* fds = buffer + 256;
        *(int*)fds = s;
        *(short*)(fds + 4) = POLLIN;
        *(int*)(fds + 8) = signals;
        *(short*)(fds + 12) = POLLIN;
        while (true)
        {
            *(short*)(fds + 6) = 0;
            *(short*)(fds + 14) = 0;
            if (poll(fds, signals < 0 ? 1UL : 2UL, -1) < 0)
            {
                if (Errno() == EINTR) continue;
                return Fail("poll", Errno());
            }
            if (*(short*)(fds + 14) != 0)
            {
                // struct signalfd_siginfo (128 bytes): ssi_signo first.
                if (read(signals, buffer + 512, 128) == 128)
                {
                    buffer[0] = (byte)'S';
                    buffer[1] = (byte)*(uint*)(buffer + 512);
                    send(s, buffer, 2, MSG_NOSIGNAL);
                }
            }
            if (*(short*)(fds + 6) != 0)
            {
                nint r = recv(s, buffer, 64, 0);
                if (r < 0 && Errno() == EINTR) continue;
                if (r == 5 && buffer[0] == (byte)'X') return *(int*)(buffer + 1);
                if (r == 2 && buffer[0] == (byte)'D')
                {
                    // A signal the command does not pass on: it does to us what it does to
                    // runc, its default action (the command itself goes on in hostos-init).
                    int number = buffer[1];
                    signal(number, 0 /* SIG_DFL */);
                    sigprocmask(SIG_SETMASK, s_oldMask, null);
                    kill(getpid(), number);
                    continue;
                }
                Message("hostos-runc: hostos-init ended the command without its exit code\n");
                return 1;
            }
        }
    }

    /// <summary>Sends the request with our descriptors 0, 1 and 2 (SCM_RIGHTS).</summary>
    private static bool SendWithStdio(int s, byte* request, int length)
    {
        // struct msghdr (56 bytes) at 0, its iovec at 64, the control message at 96:
        // cmsg_len = CMSG_LEN(3 * sizeof(int)) = 28, SOL_SOCKET, SCM_RIGHTS, 0, 1, 2; CMSG_SPACE 32.
        byte* m = malloc(160);
        if (m == null) return false;
        for (int i = 0; i < 160; i++) m[i] = 0;
        *(byte**)(m + 64) = request;
        *(ulong*)(m + 72) = (ulong)length;
        *(ulong*)(m + 96) = 28;
        *(int*)(m + 104) = SOL_SOCKET;
        *(int*)(m + 108) = SCM_RIGHTS;
        *(int*)(m + 112) = 0;
        *(int*)(m + 116) = 1;
        *(int*)(m + 120) = 2;
        *(byte**)(m + 16) = m + 64;
        *(ulong*)(m + 24) = 1;
        *(byte**)(m + 32) = m + 96;
        *(ulong*)(m + 40) = 32;
        nint sent;
        do sent = sendmsg(s, m, MSG_NOSIGNAL);
        while (sent < 0 && Errno() == EINTR);
        return sent == length;
    }

    private static int Refused(int s, byte** argv, byte* reason)
    {
        close(s);
        return RunHere(argv, reason);
    }

    private static int Refused(int s, byte** argv, string reason)
    {
        close(s);
        return RunHere(argv, reason);
    }

    private static int RunHere(byte** argv, string reason)
    {
        byte* text = malloc(reason.Length + 1);
        if (text != null) text[Copy(text, 0, reason)] = 0;
        return RunHere(argv, text);
    }

    /// <summary>
    /// The runtime in the caller's process, with the same arguments; why hostos-init did not
    /// serve the command goes along in HOSTOS_RUNC_NOT_SERVED (printed with --debug).
    /// </summary>
    private static int RunHere(byte** argv, byte* reason)
    {
        byte* name = malloc(32);
        byte* path = malloc(64);
        if (name == null || path == null) return 1;
        name[Copy(name, 0, "HOSTOS_RUNC_NOT_SERVED")] = 0;
        path[Copy(path, 0, "/usr/lib/hostos/hostos-runc")] = 0;
        if (reason != null) setenv(name, reason, 1);
        if (s_masked) sigprocmask(SIG_SETMASK, s_oldMask, null);
        execv(path, argv);
        return Fail("execv /usr/lib/hostos/hostos-runc", Errno());
    }

    private static int Fail(string what, int errno)
    {
        byte* line = malloc(512);
        if (line == null) return 1;
        int n = Copy(line, 0, "hostos-runc: ");
        n = Copy(line, n, what);
        n = Copy(line, n, ": ");
        for (byte* e = strerror(errno); *e != 0 && n < 500; e++) line[n++] = *e;
        line[n++] = (byte)'\n';
        write(2, line, n);
        return 1;
    }

    private static void Message(string text)
    {
        byte* line = malloc(text.Length);
        if (line != null) write(2, line, Copy(line, 0, text));
    }

    /// <summary>Copies an ASCII literal to <paramref name="to"/> at <paramref name="at"/>; returns where it ends.</summary>
    private static int Copy(byte* to, int at, string text)
    {
        fixed (char* c = text)
        {
            for (int i = 0; i < text.Length; i++) to[at++] = (byte)c[i];
        }
        return at;
    }

    private static int Errno() => *__errno_location();
}
