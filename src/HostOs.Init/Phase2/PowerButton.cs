using System.Buffers.Binary;

namespace HostOs.Init.Phase2;

/// <summary>
/// The ACPI power button: QEMU's <c>system_powerdown</c> and a cloud's "stop" arrive as a
/// KEY_POWER press on the input device named "Power Button" (drivers: button + evdev).
/// Nothing signals PID 1 by itself, so a thread reads that device's events.
/// </summary>
internal static class PowerButton
{
    private const ushort EV_KEY = 1, KEY_POWER = 116;
    private const int EventSize = 24; // struct input_event on x86-64: timeval(16), type, code, value

    public static void Watch(Action pressed, string sysInput = "/sys/class/input", string dev = "/dev/input")
    {
        var thread = new Thread(() =>
        {
            string? device = Find(sysInput, dev);
            if (device is null)
            {
                Log.Warn("no 'Power Button' input device: ACPI power-off requests will not be seen");
                return;
            }
            Log.Info($"power button: {device}");
            try
            {
                using var stream = new FileStream(device, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 1);
                byte[] ev = new byte[EventSize];
                while (stream.ReadAtLeast(ev, EventSize, throwOnEndOfStream: false) == EventSize)
                {
                    if (IsPowerPress(ev)) pressed();
                }
            }
            catch (Exception e)
            {
                Log.Error($"power button {device}", e);
            }
        })
        { IsBackground = true, Name = "power-button" };
        thread.Start();
    }

    internal static bool IsPowerPress(ReadOnlySpan<byte> ev) =>
        BinaryPrimitives.ReadUInt16LittleEndian(ev[16..]) == EV_KEY &&
        BinaryPrimitives.ReadUInt16LittleEndian(ev[18..]) == KEY_POWER &&
        BinaryPrimitives.ReadInt32LittleEndian(ev[20..]) == 1;

    private static string? Find(string sysInput, string dev)
    {
        // The device node may trail the module load by a moment.
        for (int attempt = 0; attempt < 50; attempt++)
        {
            if (Directory.Exists(sysInput))
            {
                foreach (string entry in Directory.EnumerateDirectories(sysInput, "event*"))
                {
                    string nameFile = Path.Combine(entry, "device", "name");
                    if (File.Exists(nameFile) && File.ReadAllText(nameFile).Trim() == "Power Button")
                    {
                        string node = Path.Combine(dev, Path.GetFileName(entry));
                        if (File.Exists(node)) return node;
                    }
                }
            }
            Thread.Sleep(100);
        }
        return null;
    }
}
