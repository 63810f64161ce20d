using Microsoft.Win32.SafeHandles;

namespace HostOs.Platform.Interop;

/// <summary>
/// The runtime's side of containers with process.terminal: hostos-stage makes the pty inside
/// the container (its devpts) and sends the master to whoever holds the console socket
/// (SCM_RIGHTS); here it is received, sized and proxied.
/// </summary>
public static unsafe partial class Sys
{
    private const ulong TIOCSWINSZ = 0x5414, TIOCGWINSZ = 0x5413;
    private const int SOL_SOCKET = 1, SCM_RIGHTS = 1;

    [LibraryImport(Libc, EntryPoint = "ioctl", SetLastError = true)]
    private static partial int IoctlRaw(int fd, ulong request, nint argument);

    [LibraryImport(Libc, EntryPoint = "recvmsg", SetLastError = true)]
    private static partial nint RecvmsgRaw(int fd, MsgHdr* message, int flags);

    [LibraryImport(Libc, EntryPoint = "socketpair", SetLastError = true)]
    private static partial int SocketpairRaw(int domain, int type, int protocol, int* fds);

    [LibraryImport(Libc, EntryPoint = "tcgetattr", SetLastError = true)]
    private static partial int TcgetattrRaw(int fd, byte* termios);

    [LibraryImport(Libc, EntryPoint = "tcsetattr", SetLastError = true)]
    private static partial int TcsetattrRaw(int fd, int action, byte* termios);

    [LibraryImport(Libc, EntryPoint = "cfmakeraw")]
    private static partial void CfmakerawRaw(byte* termios);

    [LibraryImport(Libc, EntryPoint = "isatty")]
    private static partial int IsattyRaw(int fd);

    [StructLayout(LayoutKind.Sequential)]
    private struct MsgHdr
    {
        public void* Name;
        public uint NameLength;
        public IoVec* Iov;
        public nuint IovLength;
        public void* Control;
        public nuint ControlLength;
        public int Flags;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct IoVec
    {
        public void* Base;
        public nuint Length;
    }

    private static int Fd(SafeHandle h) => (int)h.DangerousGetHandle();

    public static void SetWindowSize(SafeFileHandle tty, ushort rows, ushort columns)
    {
        ushort* size = stackalloc ushort[4] { rows, columns, 0, 0 };
        Check(IoctlRaw(Fd(tty), TIOCSWINSZ, (nint)size), "ioctl(TIOCSWINSZ)", null);
    }

    /// <summary>The window size of a terminal fd, or null when it is not a terminal.</summary>
    public static (ushort Rows, ushort Columns)? GetWindowSize(int fd)
    {
        ushort* size = stackalloc ushort[4];
        return IoctlRaw(fd, TIOCGWINSZ, (nint)size) == 0 ? (size[0], size[1]) : null;
    }

    public static bool IsTerminal(int fd) => IsattyRaw(fd) == 1;

    /// <summary>Receives one descriptor sent with SCM_RIGHTS (hostos-stage sends a pty's master so, as runc's console socket protocol does).</summary>
    public static SafeFileHandle ReceiveDescriptor(SafeHandle socket)
    {
        var (_, fds) = ReceiveWithDescriptors(socket, new byte[4096], 1);
        return fds.Length == 1 ? fds[0] : throw new IOException("recvmsg: no descriptor came with the message");
    }

    /// <summary>
    /// One message into <paramref name="buffer"/> and the descriptors sent with it
    /// (SCM_RIGHTS, made close-on-exec), at most <paramref name="maxDescriptors"/>. A message
    /// or descriptor list cut short (MSG_TRUNC, MSG_CTRUNC) is refused, and whatever
    /// descriptors came are closed. Length 0 with no descriptors: the peer has closed.
    /// </summary>
    public static (int Length, SafeFileHandle[] Descriptors) ReceiveWithDescriptors(SafeHandle socket, Span<byte> buffer, int maxDescriptors)
    {
        int controlSize = 16 + (4 * maxDescriptors + 7) / 8 * 8; // CMSG_SPACE
        byte* control = stackalloc byte[controlSize];
        new Span<byte>(control, controlSize).Clear();
        fixed (byte* data = buffer)
        {
            var iov = new IoVec { Base = data, Length = (nuint)buffer.Length };
            var message = new MsgHdr { Iov = &iov, IovLength = 1, Control = control, ControlLength = (nuint)controlSize };
            nint n;
            do n = RecvmsgRaw(Fd(socket), &message, 0x40000000 /* MSG_CMSG_CLOEXEC */);
            while (n < 0 && Marshal.GetLastPInvokeError() == Errno.EINTR);
            if (n < 0) throw new SysException("recvmsg", null, Marshal.GetLastPInvokeError());
            var fds = new List<SafeFileHandle>();
            if (message.ControlLength >= 16 && *(int*)(control + 8) == SOL_SOCKET && *(int*)(control + 12) == SCM_RIGHTS)
            {
                int count = (int)((*(ulong*)control - 16) / 4);
                for (int i = 0; i < count; i++) fds.Add(new SafeFileHandle(*(int*)(control + 16 + 4 * i), ownsHandle: true));
            }
            if ((message.Flags & (0x20 /* MSG_TRUNC */ | 0x8 /* MSG_CTRUNC */)) != 0)
            {
                foreach (var fd in fds) fd.Dispose();
                throw new IOException($"recvmsg: the message was longer than {buffer.Length} bytes or came with more than {maxDescriptors} descriptors");
            }
            return ((int)n, fds.ToArray());
        }
    }

    [LibraryImport(Libc, EntryPoint = "getsockopt", SetLastError = true)]
    private static partial int GetsockoptRaw(int fd, int level, int name, void* value, uint* length);

    /// <summary>The pid, uid and gid of the process at the other end of a connected Unix socket, as of its connect (SO_PEERCRED).</summary>
    public static (int Pid, uint Uid, uint Gid) PeerCredentials(SafeHandle socket)
    {
        int* ucred = stackalloc int[3];
        uint length = 12;
        Check(GetsockoptRaw(Fd(socket), SOL_SOCKET, 17 /* SO_PEERCRED */, ucred, &length), "getsockopt(SO_PEERCRED)", null);
        return (ucred[0], (uint)ucred[1], (uint)ucred[2]);
    }

    /// <summary>A connected pair of Unix stream sockets, close-on-exec.</summary>
    public static (SafeFileHandle, SafeFileHandle) SocketPair()
    {
        int* fds = stackalloc int[2];
        Check(SocketpairRaw(1 /* AF_UNIX */, 1 /* SOCK_STREAM */ | O_CLOEXEC, 0, fds), "socketpair", null);
        return (new SafeFileHandle(fds[0], true), new SafeFileHandle(fds[1], true));
    }

    /// <summary>Puts a terminal in raw mode; returns what to restore (null when fd is not a terminal).</summary>
    public static byte[]? MakeRaw(int fd)
    {
        byte[] saved = new byte[64]; // struct termios is 60 bytes on x86-64
        fixed (byte* s = saved)
        {
            if (TcgetattrRaw(fd, s) != 0) return null;
            byte* raw = stackalloc byte[64];
            new Span<byte>(s, 64).CopyTo(new Span<byte>(raw, 64));
            CfmakerawRaw(raw);
            TcsetattrRaw(fd, 0 /* TCSANOW */, raw);
        }
        return saved;
    }

    public static void RestoreTerminal(int fd, byte[] saved)
    {
        fixed (byte* s = saved) TcsetattrRaw(fd, 0, s);
    }
}
