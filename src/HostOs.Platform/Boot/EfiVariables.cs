using System.Text;

namespace HostOs.Platform.Boot;

/// <summary>
/// Reads the Boot Loader Interface variables systemd-boot leaves for the OS
/// (https://systemd.io/BOOT_LOADER_INTERFACE/). In efivarfs each variable is a file
/// <c>NAME-VENDORGUID</c>: 4 bytes of attributes, then the value (UTF-16LE, NUL-terminated).
/// </summary>
public static class EfiVariables
{
    public const string Directory = "/sys/firmware/efi/efivars";
    private const string LoaderVendor = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f";

    public static string? ReadLoaderString(string name, string directory = Directory)
    {
        string path = Path.Combine(directory, $"{name}-{LoaderVendor}");
        if (!File.Exists(path)) return null;
        byte[] raw = File.ReadAllBytes(path);
        return raw.Length < 4 ? null : DecodeString(raw.AsSpan(4));
    }

    internal static string DecodeString(ReadOnlySpan<byte> utf16)
    {
        string s = Encoding.Unicode.GetString(utf16[..(utf16.Length & ~1)]);
        int nul = s.IndexOf('\0');
        return nul < 0 ? s : s[..nul];
    }
}
