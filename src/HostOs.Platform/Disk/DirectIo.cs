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
/// The handle is a <see cref="DirectHandle"/>.
/// </summary>
public static class DirectIo
{
    /// <summary>Enough for any logical block size a disk has (512 or 4096) and for the page size.</summary>
    public const int Alignment = 4096;

    /// <summary>Whether a direct transfer of <paramref name="span"/> at <paramref name="offset"/> is allowed (for memory that cannot move: pinned).</summary>
    internal static unsafe bool Fits(ReadOnlySpan<byte> span, long offset)
    {
        fixed (byte* p = span) return Fits(p, span.Length, offset);
    }

    internal static unsafe bool Fits(byte* p, int length, long offset) =>
        ((nint)p & (Alignment - 1)) == 0 && length % Alignment == 0 && offset % Alignment == 0;

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

/// <summary>
/// A file opened a second time, with O_DIRECT, beside the caller's buffered handle. Its
/// transfers are tried only where they are aligned, checked and done while the memory is
/// pinned (a managed array may otherwise move in between). The first one the device refuses
/// (a logical block larger than <see cref="DirectIo.Alignment"/>, a file system that opens
/// with O_DIRECT but refuses the I/O) ends direct I/O on it: the caller's buffered handle
/// does the rest, and its error, if any, is the one to report.
/// </summary>
public sealed class DirectHandle : IDisposable
{
    private const int O_RDWR = 2, O_DIRECT = 0x4000; // x86-64's values, as every open flag in Sys (arm64's O_DIRECT is 0x10000)
    private readonly SafeFileHandle _handle;
    private volatile bool _refused;

    private DirectHandle(SafeFileHandle handle) => _handle = handle;

    /// <summary><paramref name="path"/> opened with O_DIRECT, or null when the file system refuses it.</summary>
    public static DirectHandle? Open(string path, bool write)
    {
        try
        {
            return new DirectHandle(Sys.Open(path, (write ? O_RDWR : 0) | O_DIRECT));
        }
        catch (SysException)
        {
            return null;
        }
    }

    /// <summary>Whether direct transfers are still tried (no device refusal yet).</summary>
    public bool Usable => !_refused;

    /// <summary>The descriptor, for a look at its flags.</summary>
    internal SafeFileHandle Handle => _handle;

    /// <summary>All of <paramref name="bytes"/> written at <paramref name="offset"/>; false when not aligned or refused (nothing to rely on written).</summary>
    public unsafe bool TryWrite(ReadOnlySpan<byte> bytes, long offset)
    {
        if (_refused) return false;
        fixed (byte* p = bytes)
        {
            if (!DirectIo.Fits(p, bytes.Length, offset)) return false;
            try
            {
                RandomAccess.Write(_handle, bytes, offset);
                return true;
            }
            catch (IOException)
            {
                _refused = true;
                return false;
            }
        }
    }

    /// <summary>The bytes read into <paramref name="buffer"/> (fewer at the end of a file); null when not aligned or refused.</summary>
    public unsafe int? TryRead(Span<byte> buffer, long offset)
    {
        if (_refused) return null;
        fixed (byte* p = buffer)
        {
            if (!DirectIo.Fits(p, buffer.Length, offset)) return null;
            try
            {
                return RandomAccess.Read(_handle, buffer, offset);
            }
            catch (IOException)
            {
                _refused = true;
                return null;
            }
        }
    }

    public void Dispose() => _handle.Dispose();
}
