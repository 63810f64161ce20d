using HostOs.Platform.Boot;
using HostOs.Platform.Interop;

namespace HostOs.Init.Health;

/// <summary>
/// Blessing a boot on the ESP: the counted entry file is renamed to its name without the
/// counter. Crash-safe order: rename (one directory update on FAT), then fsync the
/// directory. A power cut before the fsync leaves the counted name, which only costs
/// one try; it can never leave both names or none.
/// </summary>
internal static class BootEntryFiles
{
    public const string EntriesDirectory = "loader/entries";

    /// <summary>The counted entry this boot came from, from systemd-boot's LoaderBootCountPath
    /// (e.g. <c>\loader\entries\hostos-2+2-1.conf</c>), or null for an uncounted boot.</summary>
    public static BootEntryName? FromBootCountPath(string? loaderPath)
    {
        if (string.IsNullOrEmpty(loaderPath)) return null;
        string file = loaderPath.Replace('\\', '/').Split('/').Last();
        return BootEntryName.TryParse(file, out BootEntryName name) && name.IsCounted ? name : null;
    }

    public static void Bless(string espRoot, BootEntryName entry)
    {
        string dir = Path.Combine(espRoot, EntriesDirectory);
        string from = Path.Combine(dir, entry.FileName);
        string to = Path.Combine(dir, entry.Blessed().FileName);
        if (!File.Exists(from))
        {
            throw new FileNotFoundException($"boot entry {from} is not on the ESP (renamed by someone else?)");
        }
        File.Move(from, to, overwrite: false);
        Sys.FsyncDirectory(dir);
    }
}
