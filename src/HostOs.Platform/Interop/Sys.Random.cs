namespace HostOs.Platform.Interop;

public static unsafe partial class Sys
{
    [LibraryImport(Libc, EntryPoint = "getrandom", SetLastError = true)]
    private static partial nint GetRandomRaw(byte* buffer, nuint length, uint flags);

    /// <summary>
    /// Random bytes from getrandom(2), blocking until the kernel's pool is initialised.
    /// PID 1 uses this rather than System.Security.Cryptography, which loads OpenSSL
    /// (not in the image).
    /// </summary>
    public static void GetRandom(Span<byte> buffer)
    {
        fixed (byte* p = buffer)
        {
            int done = 0;
            while (done < buffer.Length)
            {
                nint n = GetRandomRaw(p + done, (nuint)(buffer.Length - done), 0);
                if (n < 0)
                {
                    int errno = Marshal.GetLastPInvokeError();
                    if (errno == Errno.EINTR) continue;
                    throw new SysException("getrandom", null, errno);
                }
                done += (int)n;
            }
        }
    }
}
