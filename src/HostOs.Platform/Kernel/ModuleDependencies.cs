namespace HostOs.Platform.Kernel;

/// <summary>
/// modules.dep as written by depmod(8): one line per module,
/// <c>kernel/fs/overlayfs/overlay.ko: kernel/lib/dep.ko ...</c>, paths relative to
/// <c>/lib/modules/$(uname -r)</c>, dependencies listed so that the last one must load
/// first. We resolve the order ourselves (no modprobe in the image).
/// </summary>
public sealed class ModuleDependencies
{
    private readonly Dictionary<string, (string Path, string[] Deps)> _byName;

    private ModuleDependencies(Dictionary<string, (string, string[])> byName) => _byName = byName;

    public IEnumerable<string> Names => _byName.Keys;

    /// <summary>A module's name: its file name without .ko (and compression suffix), '-' as '_'.</summary>
    public static string NameOf(string path)
    {
        string file = System.IO.Path.GetFileName(path);
        int ko = file.IndexOf(".ko", StringComparison.Ordinal);
        if (ko >= 0) file = file[..ko];
        return file.Replace('-', '_');
    }

    public static ModuleDependencies Parse(string text)
    {
        var byName = new Dictionary<string, (string, string[])>(StringComparer.Ordinal);
        int lineNo = 0;
        foreach (string raw in text.Split('\n'))
        {
            lineNo++;
            string line = raw.Trim();
            if (line.Length == 0 || line[0] == '#') continue;
            int colon = line.IndexOf(':');
            if (colon <= 0)
            {
                throw new InvalidDataException($"modules.dep line {lineNo}: expected 'module.ko: deps', got '{line}'");
            }
            string path = line[..colon];
            string[] deps = line[(colon + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
            byName[NameOf(path)] = (path, deps);
        }
        return new ModuleDependencies(byName);
    }

    public string PathOf(string name) =>
        _byName.TryGetValue(name.Replace('-', '_'), out var entry)
            ? entry.Path
            : throw new KeyNotFoundException($"kernel module '{name}' is not in modules.dep");

    /// <summary>
    /// The module paths to load for <paramref name="names"/>, every dependency before the
    /// module that needs it, each once. A cycle (which depmod would reject) is an error.
    /// </summary>
    public IReadOnlyList<string> LoadOrder(IEnumerable<string> names)
    {
        var order = new List<string>();
        var done = new HashSet<string>(StringComparer.Ordinal);
        var active = new HashSet<string>(StringComparer.Ordinal);
        foreach (string name in names) Visit(name.Replace('-', '_'));
        return order;

        void Visit(string name)
        {
            if (done.Contains(name)) return;
            if (!active.Add(name)) throw new InvalidDataException($"modules.dep: dependency cycle through '{name}'");
            if (!_byName.TryGetValue(name, out var entry))
            {
                throw new KeyNotFoundException($"kernel module '{name}' is not in modules.dep");
            }
            // depmod lists deps "last loads first"; loading each dep after its own deps
            // gives a valid order whatever their listed order.
            foreach (string dep in entry.Deps.Reverse()) Visit(NameOf(dep));
            active.Remove(name);
            done.Add(name);
            order.Add(entry.Path);
        }
    }
}
