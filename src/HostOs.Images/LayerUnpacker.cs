using HostOs.Platform;
using HostOs.Platform.Interop;

namespace HostOs.Images;

/// <summary>What a layer may contain beyond files, links and directories.</summary>
public sealed record UnpackPolicy
{
    /// <summary>Character and block device nodes (off: an image is not trusted with devices).</summary>
    public bool AllowDeviceNodes { get; init; }
}

public sealed record UnpackStats(int Entries, int Whiteouts, int OpaqueDirectories, long Bytes, List<string> DroppedXattrs);

/// <summary>
/// Unpacks a layer's tar into an empty directory as an overlayfs layer: OCI whiteouts
/// (".wh.NAME") become overlay whiteouts (a 0/0 character device), opaque markers
/// (".wh..wh..opq") the trusted.overlay.opaque xattr; hard links, symlinks, fifos, owners,
/// modes (setuid included), times and xattrs (file capabilities) are kept.
/// A hostile layer cannot reach outside the directory: ".." in a name is refused, nothing is
/// ever written through a symbolic link (each parent is checked, an existing entry is
/// replaced, never followed), hard links must point inside the layer, device nodes are
/// refused unless allowed, and trusted.overlay.* xattrs (which would steer overlayfs) are
/// refused. docs/images.md, "Unpacking layers".
/// </summary>
public static class LayerUnpacker
{
    private const string WhiteoutPrefix = ".wh.", Opaque = ".wh..wh..opq";

    public static UnpackStats Unpack(Stream tar, string destination, UnpackPolicy policy, string what)
    {
        destination = Path.GetFullPath(destination);
        if (new DirectoryInfo(destination).LinkTarget is not null) throw new ImageException($"{what}: destination {destination} is a symbolic link");
        Directory.CreateDirectory(destination);
        var reader = new TarReader(tar, what);
        var directories = new List<(string Path, TarEntry Entry)>();
        var dropped = new List<string>();
        int entries = 0, whiteouts = 0, opaques = 0;
        long bytes = 0;
        while (reader.Next() is TarEntry e)
        {
            entries++;
            string[] parts = Normalize(e.Name, what);
            if (parts.Length == 0)
            {
                if (e.Type == '5') directories.Add((destination, e)); // "./": the layer's root
                continue;
            }
            string name = parts[^1];
            string parent = EnsureParent(destination, parts, what, e.Name);
            string target = Path.Combine(parent, name);

            if (name == Opaque)
            {
                Sys.SetXattr(parent, "trusted.overlay.opaque", "y"u8);
                opaques++;
                continue;
            }
            if (name.StartsWith(WhiteoutPrefix, StringComparison.Ordinal))
            {
                string hidden = name[WhiteoutPrefix.Length..];
                if (hidden.StartsWith(WhiteoutPrefix, StringComparison.Ordinal)) continue; // other aufs metadata (.wh..wh.plnk)
                if (hidden is "" or "." or "..") throw new ImageException($"{what}: entry '{e.Name}': a whiteout of '{hidden}'");
                string victim = Path.Combine(parent, hidden);
                RemoveExisting(victim);
                Sys.MakeNode(victim, Sys.S_IFCHR, 0, 0);
                whiteouts++;
                continue;
            }

            switch (e.Type)
            {
                case '5':
                    if (!IsRealDirectory(target))
                    {
                        RemoveExisting(target);
                        Directory.CreateDirectory(target);
                    }
                    directories.Add((target, e));
                    ApplyXattrs(target, e, what, dropped);
                    continue; // mode, owner and times once its contents are in
                case '0':
                    RemoveExisting(target);
                    using (var file = new FileStream(target, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
                    {
                        reader.Data.CopyTo(file);
                        bytes += e.Size;
                    }
                    break;
                case '2':
                    RemoveExisting(target);
                    File.CreateSymbolicLink(target, e.LinkName); // kept as written; never followed by us
                    break;
                case '1':
                {
                    string[] linkParts = Normalize(e.LinkName, what);
                    if (linkParts.Length == 0) throw new ImageException($"{what}: entry '{e.Name}': hard link to the layer's root");
                    string existing = Path.Combine(EnsureParent(destination, linkParts, what, e.LinkName, create: false), linkParts[^1]);
                    var info = new FileInfo(existing);
                    if (!info.Exists && info.LinkTarget is null)
                    {
                        throw new ImageException($"{what}: entry '{e.Name}': hard link to '{e.LinkName}', which is not (yet) in this layer");
                    }
                    if (IsRealDirectory(existing)) throw new ImageException($"{what}: entry '{e.Name}': hard link to a directory");
                    if (existing == target) continue;
                    RemoveExisting(target);
                    Sys.Link(existing, target);
                    continue; // shares the inode: attributes are the target's
                }
                case '3':
                case '4':
                    if (!policy.AllowDeviceNodes)
                    {
                        throw new ImageException($"{what}: entry '{e.Name}': {(e.Type == '3' ? "character" : "block")} device {e.DeviceMajor}:{e.DeviceMinor}; device nodes are not allowed in image layers");
                    }
                    RemoveExisting(target);
                    Sys.MakeNode(target, (e.Type == '3' ? Sys.S_IFCHR : Sys.S_IFBLK) | (e.Mode & 0xFFF), e.DeviceMajor, e.DeviceMinor);
                    break;
                case '6':
                    RemoveExisting(target);
                    Sys.MakeNode(target, Sys.S_IFIFO | (e.Mode & 0xFFF), 0, 0);
                    break;
            }
            Finish(target, e, what, dropped);
        }
        // Directories last, deepest first: filling them changed their times. A later entry
        // may have replaced one (or a parent) with a symlink: chmod follows links, so each is
        // checked again and skipped unless it is still a real directory reached without one.
        foreach (var (path, e) in Enumerable.Reverse(directories))
        {
            if (StillARealDirectory(destination, path)) Finish(path, e, what, dropped, xattrs: false);
        }
        return new UnpackStats(entries, whiteouts, opaques, bytes, dropped);
    }

    /// <summary>A tar name as path components: "./a//b/" → [a, b]; ".." anywhere is refused.</summary>
    internal static string[] Normalize(string name, string what)
    {
        var parts = name.Split('/', StringSplitOptions.RemoveEmptyEntries).Where(p => p != ".").ToArray();
        if (parts.Contains("..")) throw new ImageException($"{what}: entry '{name}': '..' would leave the layer");
        if (name.Contains('\0')) throw new ImageException($"{what}: entry '{name}': NUL in a name");
        return parts;
    }

    /// <summary>
    /// The entry's parent directory inside the layer, created when missing (as tar does),
    /// with no component a symbolic link: a link made by an earlier entry ("etc -> /etc")
    /// must not carry a later entry ("etc/passwd") out of the layer.
    /// </summary>
    private static string EnsureParent(string root, string[] parts, string what, string entryName, bool create = true)
    {
        string current = root;
        for (int i = 0; i < parts.Length - 1; i++)
        {
            current = Path.Combine(current, parts[i]);
            var info = new DirectoryInfo(current);
            if (info.LinkTarget is not null)
            {
                throw new ImageException($"{what}: entry '{entryName}': '{string.Join('/', parts[..(i + 1)])}' is a symbolic link; nothing is written through one");
            }
            if (info.Exists) continue;
            if (File.Exists(current))
            {
                if (!create) throw new ImageException($"{what}: entry '{entryName}': '{string.Join('/', parts[..(i + 1)])}' is not a directory");
                File.Delete(current); // a later directory replaces an earlier file, as tar does
            }
            if (!create) throw new ImageException($"{what}: entry '{entryName}': '{string.Join('/', parts[..(i + 1)])}' does not exist in this layer");
            Directory.CreateDirectory(current);
        }
        return current;
    }

    private static bool StillARealDirectory(string root, string path)
    {
        string current = root;
        foreach (string part in Path.GetRelativePath(root, path).Split('/', StringSplitOptions.RemoveEmptyEntries).Where(p => p != "."))
        {
            current = Path.Combine(current, part);
            if (!IsRealDirectory(current)) return false;
        }
        return IsRealDirectory(path);
    }

    private static bool IsRealDirectory(string path)
    {
        var info = new DirectoryInfo(path);
        return info.Exists && info.LinkTarget is null;
    }

    /// <summary>Whatever is at the path goes (a symlink itself, never its target).</summary>
    private static void RemoveExisting(string path)
    {
        // A symlink (even to a directory) or any non-directory is unlinked itself.
        if (new FileInfo(path).LinkTarget is not null || File.Exists(path)) File.Delete(path);
        else if (Directory.Exists(path)) Directory.Delete(path, recursive: true);
    }

    private static void Finish(string path, TarEntry e, string what, List<string> dropped, bool xattrs = true)
    {
        // chown first: it clears setuid/setgid and file capabilities, which come after it.
        Sys.Chown(path, (uint)e.Uid, (uint)e.Gid);
        if (e.Type != '2') File.SetUnixFileMode(path, (UnixFileMode)(e.Mode & 0xFFF));
        if (xattrs) ApplyXattrs(path, e, what, dropped);
        Sys.SetTimes(path, e.ModificationTime);
    }

    private static void ApplyXattrs(string path, TarEntry e, string what, List<string> dropped)
    {
        foreach (var (name, value) in e.Xattrs)
        {
            if (name.StartsWith("trusted.overlay.", StringComparison.Ordinal))
            {
                throw new ImageException($"{what}: entry '{e.Name}': xattr {name} would steer overlayfs; refused");
            }
            if (name == "security.capability" || name.StartsWith("user.", StringComparison.Ordinal))
            {
                Sys.SetXattr(path, name, value);
            }
            else
            {
                dropped.Add($"{e.Name}: {name}"); // trusted.*, security.selinux and the like mean nothing here
            }
        }
    }
}
