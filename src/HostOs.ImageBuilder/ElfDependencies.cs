namespace HostOs.ImageBuilder;

/// <summary>
/// Pulls in the shared libraries that ELF files in a tree need (DT_NEEDED, via readelf),
/// found in the unpacked library packages, recursively, with the sonames' symlinks.
/// A library no package provides is an error that names the binary and the soname.
/// </summary>
internal sealed class ElfDependencies(IReadOnlyList<string> packageTrees)
{
    private static readonly string[] LibDirs = ["lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu"];

    public static bool IsElf(string path)
    {
        using FileStream f = File.OpenRead(path);
        Span<byte> magic = stackalloc byte[4];
        return f.Read(magic) == 4 && magic.SequenceEqual("\u007fELF"u8);
    }

    public static List<string> Needed(string path) =>
        Tool.Run("readelf", ["-d", "-W", path])
            .Split('\n')
            .Where(l => l.Contains("(NEEDED)"))
            .Select(l => l[(l.IndexOf('[') + 1)..l.IndexOf(']')])
            .ToList();

    public void Resolve(FsTree tree)
    {
        var pending = new Queue<(string Owner, string Source)>();
        foreach (var (path, node) in tree.Nodes)
        {
            if (node.Kind == NodeKind.File && node.Source is not null && IsElf(node.Source)) pending.Enqueue((path, node.Source));
        }
        bool dynamic = false;
        var seen = new HashSet<string>(StringComparer.Ordinal);
        while (pending.Count > 0)
        {
            var (owner, source) = pending.Dequeue();
            foreach (string soname in Needed(source))
            {
                dynamic = true;
                if (!seen.Add(soname)) continue;
                var (tree0, dir) = Find(soname) ?? throw new FileNotFoundException(
                    $"{owner} needs {soname}, which none of the listed packages provides: add its package to 'packages'");
                string file = AddWithLinks(tree, tree0, dir + "/" + soname);
                pending.Enqueue(("/" + dir + "/" + soname, file));
            }
        }
        if (dynamic)
        {
            // The program interpreter named in PT_INTERP of every x86-64 glibc binary.
            var (t, d) = Find("ld-linux-x86-64.so.2") ?? throw new FileNotFoundException("no package provides ld-linux-x86-64.so.2: add libc6");
            AddWithLinks(tree, t, d + "/ld-linux-x86-64.so.2");
            tree.AddSymlink("/lib64/ld-linux-x86-64.so.2", "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2");
        }
    }

    private (string Tree, string Dir)? Find(string soname)
    {
        foreach (string t in packageTrees)
        {
            foreach (string d in LibDirs)
            {
                if (File.Exists(Path.Combine(t, d, soname)) || IsLink(Path.Combine(t, d, soname))) return (t, d);
            }
        }
        return null;
    }

    private static bool IsLink(string p) => new FileInfo(p).LinkTarget is not null;

    /// <summary>Adds a package file, following symlinks inside the package; returns the real file.</summary>
    internal static string AddWithLinks(FsTree tree, string packageTree, string relative)
    {
        for (int depth = 0; depth < 8; depth++)
        {
            string full = Path.Combine(packageTree, relative);
            string? link = new FileInfo(full).LinkTarget;
            if (link is null)
            {
                tree.AddFile("/" + relative, full);
                return full;
            }
            tree.AddSymlink("/" + relative, link);
            relative = Path.GetFullPath(link.StartsWith('/') ? link : "/" + Path.Combine(Path.GetDirectoryName(relative)!, link))[1..];
        }
        throw new InvalidDataException($"{relative}: too many levels of symbolic links in {packageTree}");
    }
}
