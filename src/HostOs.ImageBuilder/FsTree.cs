using System.Globalization;
using System.Text;

namespace HostOs.ImageBuilder;

internal enum NodeKind { Directory, File, Symlink, CharDevice }

internal sealed record FsNode(NodeKind Kind, int Mode, string? Source = null, byte[]? Content = null,
    string? LinkTarget = null, int Major = 0, int Minor = 0);

/// <summary>
/// An image's file tree, built in memory and written out only at the end, so that the
/// same inputs always give the same bytes (sorted paths, root owner, time 0). Paths are
/// usr-merged on the way in (/lib, /bin, /sbin, /lib64 live under /usr), since Debian 12
/// packages still ship both halves.
/// </summary>
internal sealed class FsTree
{
    private static readonly string[] Merged = ["bin", "sbin", "lib", "lib64"];
    private readonly SortedDictionary<string, FsNode> _nodes = new(StringComparer.Ordinal);

    public FsTree(bool usrMerge)
    {
        AddDirectory("/");
        if (usrMerge)
        {
            foreach (string d in Merged)
            {
                AddDirectory("/usr/" + d);
                _nodes["/" + d] = new FsNode(NodeKind.Symlink, 0x1FF, LinkTarget: "usr/" + d);
            }
        }
        UsrMerge = usrMerge;
    }

    public bool UsrMerge { get; }
    public IReadOnlyDictionary<string, FsNode> Nodes => _nodes;

    public string Map(string path)
    {
        if (!path.StartsWith('/')) throw new ArgumentException($"'{path}' is not absolute");
        string p = "/" + string.Join('/', path.Split('/', StringSplitOptions.RemoveEmptyEntries));
        if (UsrMerge)
        {
            foreach (string d in Merged)
            {
                if (p == "/" + d) return "/usr/" + d;
                if (p.StartsWith("/" + d + "/", StringComparison.Ordinal)) return "/usr" + p;
            }
        }
        return p;
    }

    public bool Contains(string path) => _nodes.ContainsKey(Map(path));

    public void AddDirectory(string path, int mode = 0x1ED /* 0755 */)
    {
        string p = path == "/" ? "/" : Map(path);
        if (_nodes.TryGetValue(p, out FsNode? existing))
        {
            if (existing.Kind != NodeKind.Directory) throw new InvalidOperationException($"{p}: already exists as {existing.Kind}");
            return;
        }
        if (p != "/") AddDirectory(Parent(p));
        _nodes[p] = new FsNode(NodeKind.Directory, mode);
    }

    public void AddFile(string path, string source, int? mode = null)
    {
        var info = new FileInfo(source);
        if (!info.Exists) throw new FileNotFoundException($"{path}: source {source} does not exist");
        int m = mode ?? ((int)info.UnixFileMode & 0xFFF);
        Put(path, new FsNode(NodeKind.File, m, Source: source));
    }

    public void AddContent(string path, string content, int mode = 0x1A4 /* 0644 */) =>
        Put(path, new FsNode(NodeKind.File, mode, Content: Encoding.UTF8.GetBytes(content)));

    public void AddSymlink(string path, string target) => Put(path, new FsNode(NodeKind.Symlink, 0x1FF, LinkTarget: target));

    public void AddCharDevice(string path, int major, int minor, int mode) =>
        Put(path, new FsNode(NodeKind.CharDevice, mode, Major: major, Minor: minor));

    private void Put(string path, FsNode node)
    {
        string p = Map(path);
        if (_nodes.TryGetValue(p, out FsNode? existing))
        {
            if (Same(existing, node)) return;
            throw new InvalidOperationException($"{p} is declared twice, differently");
        }
        AddDirectory(Parent(p));
        _nodes[p] = node;
    }

    /// <summary>The same declaration twice (a library two binaries need) is fine.</summary>
    private static bool Same(FsNode a, FsNode b) =>
        a.Kind == b.Kind && a.Mode == b.Mode && a.Source == b.Source && a.LinkTarget == b.LinkTarget &&
        a.Major == b.Major && a.Minor == b.Minor &&
        (a.Content is null ? b.Content is null : b.Content is not null && a.Content.AsSpan().SequenceEqual(b.Content));

    private static string Parent(string p)
    {
        int slash = p.LastIndexOf('/');
        return slash <= 0 ? "/" : p[..slash];
    }

    /// <summary>Writes the tree to a directory (input of mkfs.erofs). Device nodes are not supported there.</summary>
    public void Materialize(string directory)
    {
        if (Directory.Exists(directory)) Directory.Delete(directory, true);
        Directory.CreateDirectory(directory);
        foreach (var (path, node) in _nodes)
        {
            string target = directory + path;
            switch (node.Kind)
            {
                case NodeKind.Directory:
                    Directory.CreateDirectory(target);
                    File.SetUnixFileMode(target, (UnixFileMode)node.Mode);
                    break;
                case NodeKind.File:
                    if (node.Source is not null) File.Copy(node.Source, target);
                    else File.WriteAllBytes(target, node.Content!);
                    File.SetUnixFileMode(target, (UnixFileMode)node.Mode);
                    break;
                case NodeKind.Symlink:
                    File.CreateSymbolicLink(target, node.LinkTarget!);
                    break;
                default:
                    throw new InvalidOperationException($"{path}: {node.Kind} cannot be materialized without mknod");
            }
        }
    }

    /// <summary>
    /// The tree as a cpio archive in the "newc" format the kernel unpacks into its rootfs
    /// (Documentation/driver-api/early-userspace/buffer-format.rst): for each entry a
    /// 110-byte ASCII header <c>070701</c> + 13 eight-digit hex fields (ino, mode, uid, gid,
    /// nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor, namesize, check),
    /// the NUL-terminated name padded to 4 bytes, the data padded to 4 bytes; then
    /// <c>TRAILER!!!</c>. Owner root, time 0, inode numbers in the order written: path
    /// order, except that files made by the builder (small, naming the version: they change
    /// with every release) come last, so that the same binaries sit at the same offsets in
    /// consecutive versions and an update's patch of the initramfs keeps all of it but the end.
    /// </summary>
    public void WriteCpio(Stream output)
    {
        int ino = 1;
        foreach (var (path, node) in _nodes.OrderBy(e => e.Value.Kind == NodeKind.File && e.Value.Content is not null))
        {
            if (path == "/") continue;
            byte[] data = node.Kind switch
            {
                NodeKind.File => node.Content ?? File.ReadAllBytes(node.Source!),
                NodeKind.Symlink => Encoding.UTF8.GetBytes(node.LinkTarget!),
                _ => [],
            };
            int type = node.Kind switch
            {
                NodeKind.Directory => 0x4000,
                NodeKind.File => 0x8000,
                NodeKind.Symlink => 0xA000,
                _ => 0x2000,
            };
            WriteEntry(output, path[1..], ino++, type | node.Mode, node.Kind == NodeKind.Directory ? 2 : 1,
                data, node.Major, node.Minor);
        }
        WriteEntry(output, "TRAILER!!!", 0, 0, 1, [], 0, 0);
    }

    private static void WriteEntry(Stream s, string name, int ino, int mode, int nlink, byte[] data, int rmaj, int rmin)
    {
        byte[] nameBytes = Encoding.UTF8.GetBytes(name + "\0");
        var h = new StringBuilder("070701");
        foreach (long v in new long[] { ino, mode, 0, 0, nlink, 0, data.Length, 0, 0, rmaj, rmin, nameBytes.Length, 0 })
        {
            h.Append(v.ToString("X8", CultureInfo.InvariantCulture));
        }
        byte[] header = Encoding.ASCII.GetBytes(h.ToString());
        s.Write(header);
        s.Write(nameBytes);
        Pad(s, header.Length + nameBytes.Length);
        s.Write(data);
        Pad(s, data.Length);
    }

    private static void Pad(Stream s, long length)
    {
        int pad = (int)((4 - length % 4) % 4);
        for (int i = 0; i < pad; i++) s.WriteByte(0);
    }
}
