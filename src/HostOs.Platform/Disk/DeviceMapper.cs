using System.Buffers.Binary;
using System.Text;
using HostOs.Platform.Interop;
using Microsoft.Win32.SafeHandles;

namespace HostOs.Platform.Disk;

/// <summary>
/// Device-mapper devices through <c>/dev/mapper/control</c> (linux/dm-ioctl.h, interface
/// 4.x), as dmsetup does it: create the device, load its table, resume it. Only what the
/// boot needs: one read-only single-target device (dm-verity for the root). No udev: the
/// node is devtmpfs's <c>/dev/dm-N</c>.
/// </summary>
public static partial class DeviceMapper
{
    private const string Control = "/dev/mapper/control";
    private const int HeaderSize = 312, TargetSpecSize = 40;
    private const uint ReadOnlyFlag = 1 << 0;
    private const uint DevCreate = 3, DevRemove = 4, DevSuspend = 6, TableLoad = 9;

    /// <summary>
    /// Creates device <paramref name="name"/> mapping <paramref name="sectors"/> 512-byte
    /// sectors with one <paramref name="target"/> target and its table
    /// <paramref name="parameters"/>, read-only, and makes it live. Returns its node
    /// (<c>/dev/dm-N</c>). On a refused table the half-made device is removed again, and
    /// the error names the kernel's reason where it logs one (dmesg: "device-mapper: ...").
    /// </summary>
    public static string CreateReadOnly(string name, string target, long sectors, string parameters)
    {
        if (name.Length is 0 or >= 128 || name.Contains('/')) throw new ArgumentException($"device-mapper name '{name}'", nameof(name));
        using SafeFileHandle control = Sys.Open(Control, 2 /* O_RDWR */);
        byte[] created = Call(control, DevCreate, Header(name, 0, 0, HeaderSize), $"create {name}");
        ulong dev = BinaryPrimitives.ReadUInt64LittleEndian(created.AsSpan(40));
        // The kernel's encoding of dev_t (huge_encode_dev): minor's low byte, major, minor's high bits.
        uint minor = (uint)((dev & 0xff) | ((dev >> 12) & 0xfff00));
        try
        {
            byte[] p = Encoding.ASCII.GetBytes(parameters);
            int specLength = (TargetSpecSize + p.Length + 1 + 7) & ~7;
            byte[] load = Header(name, ReadOnlyFlag, 1, HeaderSize + specLength);
            Span<byte> spec = load.AsSpan(HeaderSize);
            BinaryPrimitives.WriteUInt64LittleEndian(spec, 0);            // sector_start
            BinaryPrimitives.WriteUInt64LittleEndian(spec[8..], (ulong)sectors);
            BinaryPrimitives.WriteUInt32LittleEndian(spec[20..], 0);      // next: the last one
            Encoding.ASCII.GetBytes(target).CopyTo(spec[24..]);
            p.CopyTo(spec[TargetSpecSize..]);
            Call(control, TableLoad, load, $"load the {target} table of {name}");
            Call(control, DevSuspend, Header(name, 0, 0, HeaderSize), $"resume {name}"); // no suspend flag: resume
        }
        catch
        {
            try { Call(control, DevRemove, Header(name, 0, 0, HeaderSize), $"remove {name}"); } catch (SysException) { }
            throw;
        }
        return $"/dev/dm-{minor}";
    }

    private static byte[] Header(string name, uint flags, uint targets, int size)
    {
        var b = new byte[size];
        BinaryPrimitives.WriteUInt32LittleEndian(b, 4);                   // version 4.0.0
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(12), (uint)size); // data_size
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(16), HeaderSize); // data_start
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(20), targets);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(28), flags);
        Encoding.ASCII.GetBytes(name).CopyTo(b, 48);
        return b;
    }

    private static unsafe byte[] Call(SafeFileHandle control, uint command, byte[] buffer, string what)
    {
        // _IOWR(0xfd, command, struct dm_ioctl)
        ulong request = (3UL << 30) | ((ulong)HeaderSize << 16) | (0xfdUL << 8) | command;
        fixed (byte* p = buffer)
        {
            if (Ioctl(control, request, p) != 0) throw new SysException($"device-mapper: {what}", Control, Marshal.GetLastPInvokeError());
        }
        return buffer;
    }

    [LibraryImport("libc", EntryPoint = "ioctl", SetLastError = true)]
    private static unsafe partial int Ioctl(SafeFileHandle fd, ulong request, byte* argument);
}
