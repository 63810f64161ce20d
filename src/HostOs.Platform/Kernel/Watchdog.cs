using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;
using HostOs.Platform.Interop;

namespace HostOs.Platform.Kernel;

/// <summary>
/// The kernel's watchdog device (<c>/dev/watchdog</c>: a hardware timer when the machine
/// has one and its driver is loaded, else <c>softdog</c>, a kernel timer): once opened it
/// resets the machine unless pinged within its timeout. Closing it without the magic 'V'
/// (<see cref="Disarm"/>) leaves it running, which is how phase 1 hands it to phase 2
/// across exec. Documentation/watchdog/watchdog-api.rst.
/// </summary>
public sealed partial class Watchdog : IDisposable
{
    public const string Device = "/dev/watchdog";
    private const ulong WDIOC_KEEPALIVE = 0x80045705, WDIOC_SETTIMEOUT = 0xC0045706;
    private readonly SafeFileHandle _fd;

    /// <summary>The driver's name (softdog, i6300ESB timer, ...), from sysfs.</summary>
    public string Identity { get; }
    public int TimeoutSeconds { get; private set; }

    private Watchdog(SafeFileHandle fd, string identity)
    {
        _fd = fd;
        Identity = identity;
    }

    /// <summary>Opens and arms the watchdog with <paramref name="timeoutSeconds"/>; null (and why) when the machine has none.</summary>
    public static Watchdog? TryOpen(int timeoutSeconds, out string? problem)
    {
        problem = null;
        if (!File.Exists(Device))
        {
            problem = $"no {Device} (no watchdog driver loaded)";
            return null;
        }
        SafeFileHandle fd;
        try
        {
            fd = Sys.Open(Device, Sys.O_WRONLY);
        }
        catch (SysException e)
        {
            problem = $"{Device}: {e.Message}";
            return null;
        }
        string identity = "watchdog";
        try { identity = File.ReadAllText("/sys/class/watchdog/watchdog0/identity").Trim(); }
        catch (IOException) { }
        var watchdog = new Watchdog(fd, identity);
        watchdog.SetTimeout(timeoutSeconds);
        watchdog.Keepalive();
        return watchdog;
    }

    /// <summary>Sets the timeout (the driver may round it: <see cref="TimeoutSeconds"/> says what it took) and restarts it.</summary>
    public unsafe void SetTimeout(int seconds)
    {
        int value = seconds;
        if (Ioctl(_fd, WDIOC_SETTIMEOUT, &value) != 0) throw new SysException($"ioctl(WDIOC_SETTIMEOUT, {seconds})", Device, Marshal.GetLastPInvokeError());
        TimeoutSeconds = value;
    }

    public unsafe void Keepalive()
    {
        int unused = 0;
        if (Ioctl(_fd, WDIOC_KEEPALIVE, &unused) != 0) throw new SysException("ioctl(WDIOC_KEEPALIVE)", Device, Marshal.GetLastPInvokeError());
    }

    /// <summary>Stops the watchdog (the magic close), for an orderly end where nothing must reset the machine any more.</summary>
    public void Disarm()
    {
        using var stream = new FileStream(_fd, FileAccess.Write, 0); // closes the descriptor
        stream.Write("V"u8);
    }

    /// <summary>Closes without stopping it: the timer goes on, whoever opens it next must ping it.</summary>
    public void Dispose() => _fd.Dispose();

    [LibraryImport("libc", EntryPoint = "ioctl", SetLastError = true)]
    private static unsafe partial int Ioctl(SafeFileHandle fd, ulong request, int* argument);
}
