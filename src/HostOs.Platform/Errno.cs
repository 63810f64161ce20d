namespace HostOs.Platform;

/// <summary>errno values of x86-64 Linux (asm-generic/errno-base.h, errno.h).</summary>
public static class Errno
{
    public const int EPERM = 1, ENOENT = 2, ESRCH = 3, EINTR = 4, EIO = 5, ENXIO = 6,
        E2BIG = 7, ENOEXEC = 8, EBADF = 9, ECHILD = 10, EAGAIN = 11, ENOMEM = 12,
        EACCES = 13, EFAULT = 14, EBUSY = 16, EEXIST = 17, EXDEV = 18, ENODEV = 19,
        ENOTDIR = 20, EISDIR = 21, EINVAL = 22, ENFILE = 23, EMFILE = 24, ENOSPC = 28,
        EROFS = 30, EPIPE = 32, ENOSYS = 38, ENOTEMPTY = 39, ELOOP = 40, ENODATA = 61,
        EOPNOTSUPP = 95, EADDRNOTAVAIL = 99, ETIMEDOUT = 110;

    public static string Name(int errno) => errno switch
    {
        EPERM => "EPERM", ENOENT => "ENOENT", ESRCH => "ESRCH", EINTR => "EINTR",
        EIO => "EIO", ENXIO => "ENXIO", E2BIG => "E2BIG", ENOEXEC => "ENOEXEC",
        EBADF => "EBADF", ECHILD => "ECHILD", EAGAIN => "EAGAIN", ENOMEM => "ENOMEM",
        EACCES => "EACCES", EFAULT => "EFAULT", EBUSY => "EBUSY", EEXIST => "EEXIST",
        EXDEV => "EXDEV", ENODEV => "ENODEV", ENOTDIR => "ENOTDIR", EISDIR => "EISDIR",
        EINVAL => "EINVAL", ENFILE => "ENFILE", EMFILE => "EMFILE", ENOSPC => "ENOSPC",
        EROFS => "EROFS", EPIPE => "EPIPE", ENOSYS => "ENOSYS", ENOTEMPTY => "ENOTEMPTY",
        ELOOP => "ELOOP", ENODATA => "ENODATA", EOPNOTSUPP => "EOPNOTSUPP", EADDRNOTAVAIL => "EADDRNOTAVAIL",
        ETIMEDOUT => "ETIMEDOUT",
        _ => $"errno {errno}",
    };
}
