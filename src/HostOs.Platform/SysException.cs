namespace HostOs.Platform;

/// <summary>
/// A failed system call, raised once at the interop boundary. The message names the
/// operation and the object: <c>mount '/sysroot': Invalid argument (EINVAL)</c>.
/// </summary>
public sealed class SysException : IOException
{
    public SysException(string operation, string? target, int errno)
        : base(Format(operation, target, errno))
    {
        Operation = operation;
        Target = target;
        Errno = errno;
    }

    public string Operation { get; }
    public string? Target { get; }
    public int Errno { get; }

    private static string Format(string operation, string? target, int errno)
    {
        string what = target is null ? operation : $"{operation} '{target}'";
        return $"{what}: {Marshal.GetPInvokeErrorMessage(errno)} ({HostOs.Platform.Errno.Name(errno)})";
    }
}
