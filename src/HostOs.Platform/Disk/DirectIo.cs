using Microsoft.Win32.SafeHandles;
using HostOs.Platform.Interop;

namespace HostOs.Platform.Disk;

/// <summary>
/// O_DIRECT reads and writes, for the updater's bulk copies: the data goes between the
/// device and the caller's buffer without the page cache, so the guest kernel neither
/// copies it nor manages a page per 4 KiB of it. Under TCG that work was most of what a
/// buffered copy costs (docs/updates.md "Around the page cache"). The offset, the length and
/// the buffer's address must be multiples of <see cref="Alignment"/>; callers fall back to
/// their buffered handle for anything else, and where O_DIRECT cannot be had (tmpfs).
/// </summary>
public static class DirectIo
{
    /// <summary>Enough for any logical block size a disk has (512 or 4096) and for the page size.</summary>
    public const int Alignment = 4096;
    private const int O_RDWR = 2, O_DIRECT = 0x4000; // x86-64's value, as every open flag in Sys (arm64's O_DIRECT is 0x10000)

    /// <summary>A second handle on <paramref name="path"/> with O_DIRECT, or null when the file system refuses it.</summary>
    public static SafeFileHandle? TryOpen(string path, bool write)
    {
        try
        {
            return Sys.Open(path, (write ? O_RDWR : 0) | O_DIRECT);
        }
        catch (SysException)
        {
            return null;
        }
    }

    /// <summary>Whether a direct transfer of <paramref name="span"/> at <paramref name="offset"/> is allowed (for memory that cannot move: pinned).</summary>
    public static unsafe bool Fits(ReadOnlySpan<byte> span, long offset)
    {
        fixed (byte* p = span) return Fits(p, span.Length, offset);
    }

    private static unsafe bool Fits(byte* p, int length, long offset) =>
        ((nint)p & (Alignment - 1)) == 0 && length % Alignment == 0 && offset % Alignment == 0;

    /// <summary>
    /// Writes all of <paramref name="bytes"/> at <paramref name="offset"/> through
    /// <paramref name="direct"/> when they are aligned there, checked and written while pinned
    /// (a managed array may otherwise move in between). False when they are not, or when
    /// the device refused the write (a logical block larger than <see cref="Alignment"/>, a
    /// file system that opens with O_DIRECT but refuses the I/O): the caller then writes
    /// them buffered, whose error, if any, is the one to report.
    /// </summary>
    public static unsafe bool TryWrite(SafeFileHandle direct, ReadOnlySpan<byte> bytes, long offset)
    {
        fixed (byte* p = bytes)
        {
            if (!Fits(p, bytes.Length, offset)) return false;
            try
            {
                RandomAccess.Write(direct, bytes, offset);
                return true;
            }
            catch (IOException)
            {
                return false;
            }
        }
    }

    /// <summary>
    /// Reads into <paramref name="buffer"/> from <paramref name="offset"/> through
    /// <paramref name="direct"/> when aligned (pinned as for <see cref="TryWrite"/>): the
    /// bytes read (fewer at the end of a file), or null when not aligned or refused.
    /// </summary>
    public static unsafe int? TryRead(SafeFileHandle direct, Span<byte> buffer, long offset)
    {
        fixed (byte* p = buffer)
        {
            if (!Fits(p, buffer.Length, offset)) return null;
            try
            {
                return RandomAccess.Read(direct, buffer, offset);
            }
            catch (IOException)
            {
                return null;
            }
        }
    }

    /// <summary>
    /// A pinned array with a <see cref="Alignment"/>-aligned window of <paramref name="length"/>
    /// bytes in it (pinned: the address stays where the check found it).
    /// </summary>
    public static ArraySegment<byte> AlignedBuffer(int length)
    {
        byte[] array = GC.AllocateUninitializedArray<byte>(length + Alignment, pinned: true);
        int offset;
        unsafe
        {
            fixed (byte* p = array) offset = (int)((Alignment - ((nint)p & (Alignment - 1))) & (Alignment - 1));
        }
        return new ArraySegment<byte>(array, offset, length);
    }
}
