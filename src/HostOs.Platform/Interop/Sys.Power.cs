namespace HostOs.Platform.Interop;

public enum RebootCommand : uint
{
    // linux/reboot.h, the glibc reboot(2) wrapper passes them as-is.
    Restart = 0x01234567,
    Halt = 0xCDEF0123,
    PowerOff = 0x4321FEDC,
    CtrlAltDelOff = 0x00000000, // Ctrl-Alt-Del sends SIGINT to PID 1 instead of rebooting
    CtrlAltDelOn = 0x89ABCDEF,
}

public static unsafe partial class Sys
{
    [LibraryImport(Libc, EntryPoint = "reboot", SetLastError = true)]
    private static partial int RebootRaw(uint command);

    [LibraryImport(Libc, EntryPoint = "sync")]
    public static partial void Sync();

    public static void Reboot(RebootCommand command) => Check(RebootRaw((uint)command), "reboot", command.ToString());
}
