namespace HostOs.Platform.Interop;

/// <summary>How a reaped child ended, decoded from the wait status (sys/wait.h).</summary>
public readonly record struct ExitStatus(int Raw)
{
    public bool Exited => (Raw & 0x7f) == 0;
    public int Code => (Raw >> 8) & 0xff;
    public bool Signaled => ((sbyte)((Raw & 0x7f) + 1) >> 1) > 0;
    public int Signal => Raw & 0x7f;
    /// <summary>The shell convention: the exit code, or 128 + the signal number.</summary>
    public int ShellCode => Exited ? Code : 128 + Signal;
    public override string ToString() => Exited ? $"exit code {Code}" : $"killed by signal {Signal}";
}

public static unsafe partial class Sys
{
    public const int WNOHANG = 1;
    public const int SIGKILL = 9, SIGTERM = 15, SIGINT = 2, SIGPWR = 30, SIGUSR1 = 10, SIGUSR2 = 12;

    [LibraryImport(Libc, EntryPoint = "waitpid", SetLastError = true)]
    private static partial int WaitPidRaw(int pid, int* status, int options);

    [LibraryImport(Libc, EntryPoint = "kill", SetLastError = true)]
    private static partial int KillRaw(int pid, int signal);

    [LibraryImport(Libc, EntryPoint = "getpid")]
    public static partial int GetPid();

    /// <summary>
    /// waitpid(2). Returns the pid reaped, 0 when WNOHANG found nothing, or -ECHILD when
    /// there is no child at all; other errors throw.
    /// </summary>
    public static int WaitPid(int pid, int options, out ExitStatus status)
    {
        int raw = 0;
        while (true)
        {
            int r = WaitPidRaw(pid, &raw, options);
            if (r >= 0)
            {
                status = new ExitStatus(raw);
                return r;
            }
            int errno = Marshal.GetLastPInvokeError();
            if (errno == Errno.EINTR)
            {
                continue;
            }
            status = default;
            if (errno == Errno.ECHILD)
            {
                return -Errno.ECHILD;
            }
            throw new SysException("waitpid", pid.ToString(System.Globalization.CultureInfo.InvariantCulture), errno);
        }
    }

    /// <summary>kill(2); a process that is already gone (ESRCH) is an expected race: false.</summary>
    public static bool TryKill(int pid, int signal)
    {
        if (KillRaw(pid, signal) == 0)
        {
            return true;
        }
        int errno = Marshal.GetLastPInvokeError();
        if (errno == Errno.ESRCH)
        {
            return false;
        }
        throw new SysException($"kill(signal {signal})", pid.ToString(System.Globalization.CultureInfo.InvariantCulture), errno);
    }
}
