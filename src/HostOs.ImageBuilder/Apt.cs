using System.Security.Cryptography;

namespace HostOs.ImageBuilder;

/// <summary>
/// Debian packages through apt-get download (never installed on the host), cached under
/// .cache/apt, checked against the archive's SHA256 and the lock file, unpacked with
/// dpkg-deb -x.
/// </summary>
internal sealed class Apt(string cacheDirectory, PackageLock lockFile)
{
    private readonly string _debs = Directory.CreateDirectory(Path.Combine(cacheDirectory, "debs")).FullName;
    private readonly string _trees = Directory.CreateDirectory(Path.Combine(cacheDirectory, "unpacked")).FullName;

    /// <summary>The unpacked tree of a package, at the locked version when the archive still has it.</summary>
    public string Unpack(string name)
    {
        string deb = Fetch(name);
        string tree = Path.Combine(_trees, Path.GetFileNameWithoutExtension(deb));
        if (!Directory.Exists(tree))
        {
            string tmp = tree + ".tmp";
            if (Directory.Exists(tmp)) Directory.Delete(tmp, true);
            Tool.Run("dpkg-deb", ["-x", deb, tmp]);
            Directory.Move(tmp, tree);
        }
        return tree;
    }

    public string Field(string name, string field) => Tool.Run("dpkg-deb", ["-f", Fetch(name), field]).Trim();

    private readonly Dictionary<string, string> _fetched = [];

    public string Fetch(string name)
    {
        if (_fetched.TryGetValue(name, out string? done)) return done;
        var locked = lockFile.Get(name);
        (string file, string sha)? uri = null;
        string spec = name;
        if (locked is { } l)
        {
            spec = $"{name}={l.Version}";
            uri = TryPrintUri(spec);
        }
        if (uri is null)
        {
            spec = name;
            if (locked is { } gone)
            {
                Console.Error.WriteLine($"!!! INPUT CHANGED: {name} {gone.Version} (locked) is no longer in the archive; taking the current candidate");
            }
            uri = TryPrintUri(name) ?? throw new InvalidOperationException(
                $"apt-get download cannot find package '{name}' (is it a Debian 12 package? did 'apt-get update' run?)");
        }
        var (fileName, expected) = uri.Value;
        string path = Path.Combine(_debs, fileName);
        if (!File.Exists(path) || Sha256(path) != expected)
        {
            Tool.Run("apt-get", ["download", "-q", spec], _debs);
        }
        string actual = Sha256(path);
        if (actual != expected)
        {
            throw new InvalidDataException($"{fileName}: sha256 {actual}, the archive index says {expected}");
        }
        string version = Tool.Run("dpkg-deb", ["-f", path, "Version"]).Trim();
        lockFile.Record(name, version, actual);
        _fetched[name] = path;
        return path;
    }

    /// <summary>`apt-get download --print-uris` names the file and its SHA256 without downloading.</summary>
    private static (string File, string Sha256)? TryPrintUri(string spec)
    {
        string output;
        try
        {
            output = Tool.Run("apt-get", ["download", "--print-uris", "-q", spec]);
        }
        catch (InvalidOperationException)
        {
            return null;
        }
        foreach (string line in output.Split('\n'))
        {
            string[] f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (f.Length >= 4 && f[3].StartsWith("SHA256:", StringComparison.Ordinal))
            {
                return (f[1], f[3][7..].ToLowerInvariant());
            }
        }
        return null;
    }

    public static string Sha256(string path)
    {
        using FileStream s = File.OpenRead(path);
        return Convert.ToHexStringLower(SHA256.HashData(s));
    }
}
