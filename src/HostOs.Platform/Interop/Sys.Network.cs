namespace HostOs.Platform.Interop;

public static unsafe partial class Sys
{
    private const int AF_INET = 2, SOCK_DGRAM = 2, SOCK_CLOEXEC = 0x80000;
    private const ulong SIOCGIFFLAGS = 0x8913, SIOCSIFFLAGS = 0x8914;
    private const short IFF_UP = 0x1;

    [LibraryImport(Libc, EntryPoint = "socket", SetLastError = true)]
    private static partial int SocketRaw(int domain, int type, int protocol);

    [LibraryImport(Libc, EntryPoint = "ioctl", SetLastError = true)]
    private static partial int IoctlRaw(int fd, ulong request, void* arg);

    [LibraryImport(Libc, EntryPoint = "close")]
    private static partial int CloseRaw(int fd);

    /// <summary>
    /// Sets IFF_UP on an interface with SIOCSIFFLAGS (netdevice(7)). For <c>lo</c> the
    /// kernel then assigns 127.0.0.1/8 and ::1 by itself.
    /// </summary>
    public static void SetInterfaceUp(string name)
    {
        // struct ifreq: char ifr_name[16]; union { short ifr_flags; ... } (24 bytes) = 40.
        byte* ifreq = stackalloc byte[40];
        new Span<byte>(ifreq, 40).Clear();
        int n = System.Text.Encoding.ASCII.GetBytes(name, new Span<byte>(ifreq, 15));
        ifreq[n] = 0;
        int fd = Check(SocketRaw(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), "socket", name);
        try
        {
            Check(IoctlRaw(fd, SIOCGIFFLAGS, ifreq), "ioctl(SIOCGIFFLAGS)", name);
            *(short*)(ifreq + 16) |= IFF_UP;
            Check(IoctlRaw(fd, SIOCSIFFLAGS, ifreq), "ioctl(SIOCSIFFLAGS)", name);
        }
        finally
        {
            CloseRaw(fd);
        }
    }
}
