using HostOs.Platform.Interop;

namespace HostOs.Platform.Kernel;

/// <summary>What /proc/PID/stat says that more than one component needs.</summary>
public static class ProcessStat
{
    /// <summary>Field 22 of /proc/PID/stat, or null when the process is gone or a zombie.</summary>
    public static ulong? StartTime(int pid)
    {
        // Read without exceptions: the process being gone is the common answer (run's delete).
        // Parsed from the bytes, without a culture: this runs at every run's delete.
        byte[]? bytes;
        try { bytes = Sys.TryReadFile("/proc/" + pid.ToString() + "/stat"); }
        catch (SysException) { return null; }
        if (bytes is null) return null;
        // "pid (comm) state ppid ...": the fields after the command's last ')', which may itself hold ')' or ' '.
        ReadOnlySpan<byte> rest = bytes.AsSpan(bytes.AsSpan().LastIndexOf((byte)')') + 1).TrimStart((byte)' ');
        if (rest.IsEmpty || rest[0] is (byte)'Z' or (byte)'X' or (byte)'x') return null;
        for (int field = 3; field < 22; field++) // field 22 is starttime (proc(5))
        {
            int space = rest.IndexOf((byte)' ');
            if (space < 0) throw new InvalidDataException($"/proc/{pid}/stat has {field} fields, not 22 or more");
            rest = rest[(space + 1)..];
        }
        return System.Buffers.Text.Utf8Parser.TryParse(rest, out ulong start, out _)
            ? start
            : throw new InvalidDataException($"/proc/{pid}/stat: field 22 (starttime) is not a number");
    }
}
