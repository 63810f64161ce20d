using HostOs.Platform.Interop;
using HostOs.Platform.Kernel;

namespace HostOs.Platform.Boot;

/// <summary>One HostOS entry on the ESP, as read from <c>loader/entries/hostos-*.conf</c>.</summary>
/// <param name="Slot">The root slot its options name (<c>hostos.slot=</c>), "a" or "b"; null when absent.</param>
public sealed record InstalledEntry(BootEntryName Name, string Version, string? Slot)
{
    /// <summary>blessed, bad (tries used up or marked by a rollback), or counting (tries left).</summary>
    public string State => Name.IsBad ? "bad" : Name.IsCounted ? $"counting, {Name.TriesLeft} tries left" : "blessed";
}

/// <summary>
/// The HostOS boot entries on an ESP (docs/boot.md, docs/updates.md): one Boot Loader
/// Specification file per installed version, <c>loader/entries/hostos-VERSION[+LEFT[-DONE]].conf</c>,
/// pointing at <c>hostos/VERSION/{vmlinuz,initrd.img}</c>. Every change is one rename or
/// one unlink in the entries directory followed by an fsync of that directory (and, for a
/// rename, of the file first: FAT needs it, see <see cref="Sys.RenameDurably"/>); new
/// content is written under a name systemd-boot ignores, synced, then renamed. A power cut leaves
/// the state before or after one step, never an entry naming files that are not there.
/// </summary>
public static class BootEntryFiles
{
    public const string EntriesDirectory = "loader/entries";
    public const string Prefix = "hostos-";
    public const int Tries = 3;

    /// <summary>The counted entry this boot came from, from systemd-boot's LoaderBootCountPath
    /// (e.g. <c>\loader\entries\hostos-2+2-1.conf</c>), or null for an uncounted boot.</summary>
    public static BootEntryName? FromBootCountPath(string? loaderPath)
    {
        if (string.IsNullOrEmpty(loaderPath)) return null;
        string file = loaderPath.Replace('\\', '/').Split('/').Last();
        return BootEntryName.TryParse(file, out BootEntryName name) && name.IsCounted ? name : null;
    }

    /// <summary>The entry's text: the same for the image builder's first entry and the updater's.</summary>
    public static string Text(string version, string options) =>
        $"title HostOS {version}\nversion {version}\nsort-key hostos\nlinux /hostos/{version}/vmlinuz\ninitrd /hostos/{version}/initrd.img\noptions {options}\n";

    /// <summary>The kernel command line of an entry: the image's own, then the slot and version.</summary>
    public static string Options(string cmdline, string slot, string version) =>
        $"{cmdline} hostos.slot={slot} hostos.version={version}".Trim();

    /// <summary>Where a version's kernel and initramfs live on the ESP.</summary>
    public static string BootDirectory(string espRoot, string version) => Path.Combine(espRoot, "hostos", version);

    /// <summary>Every HostOS entry on the ESP (files that do not parse are skipped: not ours to judge).</summary>
    public static List<InstalledEntry> List(string espRoot)
    {
        var found = new List<InstalledEntry>();
        string dir = Path.Combine(espRoot, EntriesDirectory);
        if (!Directory.Exists(dir)) return found;
        foreach (string path in Directory.GetFiles(dir, Prefix + "*.conf").Order(StringComparer.Ordinal))
        {
            if (!BootEntryName.TryParse(Path.GetFileName(path), out BootEntryName name)) continue;
            string? version = null, slot = null;
            foreach (string line in File.ReadAllLines(path))
            {
                string l = line.Trim();
                if (l.StartsWith("version ", StringComparison.Ordinal)) version = l[8..].Trim();
                else if (l.StartsWith("options ", StringComparison.Ordinal)) slot = KernelCommandLine.Parse(l.AsSpan(8)).Get("hostos.slot");
            }
            version ??= name.Id.StartsWith(Prefix, StringComparison.Ordinal) ? name.Id[Prefix.Length..] : name.Id;
            found.Add(new InstalledEntry(name, version, slot));
        }
        return found;
    }

    /// <summary>
    /// Writes a new counted entry <c>hostos-VERSION+3.conf</c>: its text under a temporary
    /// name (ignored by systemd-boot, which reads *.conf only), fsync, rename, fsync the
    /// directory. Until the rename the ESP boots exactly as before.
    /// </summary>
    public static BootEntryName Write(string espRoot, string version, string options, int tries = Tries)
    {
        string dir = Path.Combine(espRoot, EntriesDirectory);
        Sys.CreateDirectoryDurably(dir);
        var name = BootEntryName.New(Prefix + version, tries);
        string temp = Path.Combine(dir, $".{name.Id}.new");
        using (var f = new FileStream(temp, FileMode.Create, FileAccess.Write))
        {
            f.Write(System.Text.Encoding.UTF8.GetBytes(Text(version, options)));
            f.Flush(flushToDisk: true);
        }
        Sys.RenameDurably(temp, Path.Combine(dir, name.FileName), overwrite: true);
        return name;
    }

    /// <summary>
    /// Removes an entry, then (once the removal is on disk) its kernel and initramfs unless
    /// another entry still names the same version. Nothing is left pointing at missing files.
    /// </summary>
    public static void Remove(string espRoot, InstalledEntry entry)
    {
        string dir = Path.Combine(espRoot, EntriesDirectory);
        File.Delete(Path.Combine(dir, entry.Name.FileName));
        Sys.FsyncDirectory(dir);
        if (List(espRoot).Any(e => e.Version == entry.Version)) return;
        string boot = BootDirectory(espRoot, entry.Version);
        if (Directory.Exists(boot))
        {
            Directory.Delete(boot, recursive: true);
            Sys.FsyncDirectory(Path.GetDirectoryName(boot)!);
        }
    }

    public static void Bless(string espRoot, BootEntryName entry) => Rename(espRoot, entry, entry.Blessed());

    /// <summary>Marks an entry bad (<c>+0</c>, keeping its count of tries): systemd-boot sorts it last.</summary>
    public static BootEntryName MarkBad(string espRoot, BootEntryName entry) =>
        Rename(espRoot, entry, entry with { TriesLeft = 0, TriesDone = entry.TriesDone });

    /// <summary>Gives an entry fresh tries (<c>+3</c>): it is booted and judged again.</summary>
    public static BootEntryName Retry(string espRoot, BootEntryName entry) =>
        Rename(espRoot, entry, BootEntryName.New(entry.Id, Tries));

    private static BootEntryName Rename(string espRoot, BootEntryName from, BootEntryName to)
    {
        string dir = Path.Combine(espRoot, EntriesDirectory);
        string source = Path.Combine(dir, from.FileName);
        if (!File.Exists(source))
        {
            throw new FileNotFoundException($"boot entry {source} is not on the ESP (renamed by someone else?)");
        }
        if (from.FileName == to.FileName) return to;
        Sys.RenameDurably(source, Path.Combine(dir, to.FileName), overwrite: false);
        return to;
    }
}
