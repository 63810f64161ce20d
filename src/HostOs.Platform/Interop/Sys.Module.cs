using Microsoft.Win32.SafeHandles;

namespace HostOs.Platform.Interop;

public static unsafe partial class Sys
{
    private const long SYS_finit_module = 313; // x86-64

    [LibraryImport(Libc, EntryPoint = "syscall", SetLastError = true)]
    private static partial long Syscall3(long number, long a, long b, long c);

    /// <summary>
    /// Loads a kernel module from an open file (finit_module(2)). Returns false when the
    /// module is already loaded (EEXIST), which is not an error for an init.
    /// </summary>
    public static bool FinitModule(SafeFileHandle module, string path)
    {
        byte empty = 0;
        bool added = false;
        try
        {
            module.DangerousAddRef(ref added);
            while (true)
            {
                long r = Syscall3(SYS_finit_module, module.DangerousGetHandle(), (long)&empty, 0);
                if (r == 0)
                {
                    return true;
                }
                int errno = Marshal.GetLastPInvokeError();
                if (errno == Errno.EINTR)
                {
                    continue;
                }
                if (errno == Errno.EEXIST)
                {
                    return false;
                }
                throw new SysException("finit_module", path, errno);
            }
        }
        finally
        {
            if (added)
            {
                module.DangerousRelease();
            }
        }
    }
}
