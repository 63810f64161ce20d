namespace HostOs.ImageBuilder;

/// <summary>
/// image/packages.lock: every Debian input as it was resolved, one line
/// <c>name version sha256</c>. A build checks each download against it: the same version
/// with other bytes is an error (tampering or a broken mirror); a different version
/// (Debian's archive drops superseded builds) is taken, written back, and reported loudly.
/// </summary>
internal sealed class PackageLock
{
    private readonly SortedDictionary<string, (string Version, string Sha256)> _entries = new(StringComparer.Ordinal);
    private readonly string _path;

    public PackageLock(string path)
    {
        _path = path;
        if (!File.Exists(path)) return;
        int n = 0;
        foreach (string raw in File.ReadAllLines(path))
        {
            n++;
            string line = raw.Trim();
            if (line.Length == 0 || line[0] == '#') continue;
            string[] f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (f.Length != 3 || f[2].Length != 64) throw new InvalidDataException($"{path}:{n}: expected 'name version sha256'");
            _entries[f[0]] = (f[1], f[2]);
        }
    }

    public List<string> Changes { get; } = [];

    public (string Version, string Sha256)? Get(string name) => _entries.TryGetValue(name, out var e) ? e : null;

    public void Record(string name, string version, string sha256)
    {
        if (_entries.TryGetValue(name, out var old))
        {
            if (old.Version == version && old.Sha256 != sha256)
            {
                throw new InvalidDataException($"{name} {version}: sha256 {sha256} differs from the locked {old.Sha256}: refusing a changed input");
            }
            if (old.Version == version) return;
            Changes.Add($"{name}: {old.Version} -> {version}");
        }
        else
        {
            Changes.Add($"{name}: new, {version}");
        }
        _entries[name] = (version, sha256);
    }

    public void Save()
    {
        var lines = new List<string> { "# Debian inputs of the image, resolved by build.sh: name version sha256" };
        lines.AddRange(_entries.Select(e => $"{e.Key} {e.Value.Version} {e.Value.Sha256}"));
        File.WriteAllLines(_path, lines);
    }
}
