namespace HostOs.Platform.Interop;

/// <summary>File attributes a layer carries that .NET has no API for: hard links, extended
/// attributes and times, all without following symbolic links.</summary>
public static unsafe partial class Sys
{
    private const int AT_FDCWD = -100, AT_SYMLINK_NOFOLLOW = 0x100;

    [LibraryImport(Libc, EntryPoint = "link", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int LinkRaw(string existing, string newPath);

    [LibraryImport(Libc, EntryPoint = "lsetxattr", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int LsetxattrRaw(string path, string name, byte* value, nuint size, int flags);

    [LibraryImport(Libc, EntryPoint = "lgetxattr", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial nint LgetxattrRaw(string path, string name, byte* value, nuint size);

    [LibraryImport(Libc, EntryPoint = "utimensat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int UtimensatRaw(int dirfd, string path, long* times, int flags);

    /// <summary>link(2): a hard link to <paramref name="existing"/> itself (a symlink is not followed).</summary>
    public static void Link(string existing, string newPath) => Check(LinkRaw(existing, newPath), "link", $"{newPath} -> {existing}");

    public static void SetXattr(string path, string name, ReadOnlySpan<byte> value)
    {
        fixed (byte* v = value)
        {
            Check(LsetxattrRaw(path, name, v, (nuint)value.Length, 0), "lsetxattr " + name, path);
        }
    }

    /// <summary>An extended attribute's value, or null when the file has none of that name.</summary>
    public static byte[]? GetXattr(string path, string name)
    {
        byte* buffer = stackalloc byte[4096];
        nint n = LgetxattrRaw(path, name, buffer, 4096);
        if (n < 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            if (errno == 61 /* ENODATA */) return null;
            throw new SysException("lgetxattr " + name, path, errno);
        }
        return new ReadOnlySpan<byte>(buffer, (int)n).ToArray();
    }

    /// <summary>Sets atime and mtime of the path itself (a symlink's own times).</summary>
    public static void SetTimes(string path, DateTimeOffset time)
    {
        long seconds = time.ToUnixTimeSeconds();
        long* times = stackalloc long[4] { seconds, 0, seconds, 0 };
        Check(UtimensatRaw(AT_FDCWD, path, times, AT_SYMLINK_NOFOLLOW), "utimensat", path);
    }
}
