namespace HostOs.Platform.Interop;

/// <summary>
/// The one interop layer of HostOS. Each file holds one family of calls: the raw
/// <c>[LibraryImport]</c> stays private, the public wrapper retries EINTR and turns a
/// failure into one <see cref="SysException"/> that names the operation and the object.
/// </summary>
public static unsafe partial class Sys
{
    private const string Libc = "libc";

    /// <summary>Runs a call that returns -1 and sets errno, retrying EINTR.</summary>
    internal static int Check(int result, string operation, string? target)
    {
        if (result >= 0)
        {
            return result;
        }
        throw new SysException(operation, target, Marshal.GetLastPInvokeError());
    }

    internal static int Retry(Func<int> call, string operation, string? target)
    {
        while (true)
        {
            int result = call();
            if (result >= 0)
            {
                return result;
            }
            int errno = Marshal.GetLastPInvokeError();
            if (errno != Errno.EINTR)
            {
                throw new SysException(operation, target, errno);
            }
        }
    }
}
