using System.Globalization;
using HostOs.Platform;
using HostOs.Platform.Interop;

namespace HostOs.Containers.Cgroups;

/// <summary>A cgroup v2 failure, naming the cgroup, the file and what was written.</summary>
public sealed class CgroupException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// One cgroup v2 directory. The hierarchy's root is a parameter (/sys/fs/cgroup in the
/// system, a temp tree in unit tests). Creation enables the needed controllers level by
/// level in each ancestor's cgroup.subtree_control, as the "no internal processes" rule
/// requires: intermediate cgroups hold no processes, only children.
/// </summary>
public sealed class Cgroup
{
    public const string DefaultRoot = "/sys/fs/cgroup";

    private Cgroup(string root, string relative)
    {
        Root = root;
        Relative = relative;
        Path = relative.Length == 0 ? root : System.IO.Path.Combine(root, relative);
    }

    public string Root { get; }
    /// <summary>The cgroup's path below the root, without leading '/' ("hostos/web").</summary>
    public string Relative { get; }
    public string Path { get; }

    public static Cgroup Open(string root, string relative) => new(root, Normalize(relative));

    /// <summary>Creates the cgroup (and missing parents) with <paramref name="controllers"/> delegated to it.</summary>
    public static Cgroup Create(string root, string relative, IEnumerable<string> controllers)
    {
        var cg = new Cgroup(root, Normalize(relative));
        if (cg.Relative.Length == 0) throw new CgroupException($"cgroup path '{relative}' names the root cgroup; a container needs one of its own");
        // A container owns its cgroup: its limits, device program and, at delete, its
        // removal with everything in it. One that already holds processes belongs to others.
        if (Directory.Exists(cg.Path) && cg.Populated())
        {
            throw new CgroupException($"cgroup {cg.Path} already holds processes; a container needs a cgroup of its own");
        }
        string[] parts = cg.Relative.Split('/', StringSplitOptions.RemoveEmptyEntries);
        string[] wanted = controllers.Distinct(StringComparer.Ordinal).ToArray();
        string level = root;
        foreach (string part in parts)
        {
            if (wanted.Length > 0) EnableControllers(level, wanted);
            level = System.IO.Path.Combine(level, part);
            try
            {
                Directory.CreateDirectory(level);
            }
            catch (IOException e)
            {
                throw new CgroupException($"cgroup {level}: cannot create: {e.Message}", e);
            }
        }
        return cg;
    }

    private static void EnableControllers(string level, string[] wanted)
    {
        string available = ReadOrEmpty(System.IO.Path.Combine(level, "cgroup.controllers"));
        string enabled = ReadOrEmpty(System.IO.Path.Combine(level, "cgroup.subtree_control"));
        var have = available.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries).ToHashSet(StringComparer.Ordinal);
        var on = enabled.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries).ToHashSet(StringComparer.Ordinal);
        string[] missing = wanted.Where(c => !have.Contains(c)).ToArray();
        if (missing.Length > 0)
        {
            throw new CgroupException($"cgroup {level}: controller(s) {string.Join(", ", missing)} not available (cgroup.controllers: '{available.Trim()}')");
        }
        string[] toEnable = wanted.Where(c => !on.Contains(c)).ToArray();
        if (toEnable.Length > 0)
        {
            WriteFile(System.IO.Path.Combine(level, "cgroup.subtree_control"), string.Join(' ', toEnable.Select(c => "+" + c)));
        }
    }

    /// <summary>Writes each control file; the first failure names the file and the value.</summary>
    public void Apply(IEnumerable<(string File, string Value)> files)
    {
        foreach (var (file, value) in files) WriteFile(System.IO.Path.Combine(Path, file), value);
    }

    public void AddProcess(int pid) =>
        WriteFile(System.IO.Path.Combine(Path, "cgroup.procs"), pid.ToString()); // no culture: a pid has no sign

    /// <summary>Every process in this cgroup and the ones below it (a container may make sub-cgroups).</summary>
    public List<int> Processes()
    {
        var pids = new List<int>();
        void Walk(string dir)
        {
            foreach (string line in ReadOrEmpty(System.IO.Path.Combine(dir, "cgroup.procs")).Split('\n', StringSplitOptions.RemoveEmptyEntries))
            {
                pids.Add(int.Parse(line, CultureInfo.InvariantCulture));
            }
            if (Directory.Exists(dir)) foreach (string child in Directory.EnumerateDirectories(dir)) Walk(child);
        }
        Walk(Path);
        return pids;
    }

    /// <summary>
    /// Freezes (or thaws) every process in the cgroup and its descendants (cgroup.freeze),
    /// waiting until the kernel reports it done in cgroup.events ("frozen 1" / "frozen 0").
    /// </summary>
    public void Freeze(bool frozen, TimeSpan timeout)
    {
        WriteFile(System.IO.Path.Combine(Path, "cgroup.freeze"), frozen ? "1" : "0");
        var clock = System.Diagnostics.Stopwatch.StartNew();
        string want = frozen ? "frozen 1" : "frozen 0";
        while (!ReadOrEmpty(System.IO.Path.Combine(Path, "cgroup.events")).Split('\n').Contains(want))
        {
            if (clock.Elapsed > timeout)
            {
                // Leave it as it was rather than half-way: a failed pause must not read as paused.
                if (frozen) WriteFile(System.IO.Path.Combine(Path, "cgroup.freeze"), "0");
                throw new CgroupException($"cgroup {Path}: not {(frozen ? "frozen" : "thawed")} {timeout.TotalSeconds:F0} s after asking");
            }
            Thread.Sleep(5);
        }
    }

    /// <summary>cgroup.freeze says 1: frozen or being frozen.</summary>
    public bool Frozen() => ReadOrEmpty(System.IO.Path.Combine(Path, "cgroup.freeze")).Trim() == "1";

    /// <summary>Kills every process in the cgroup: cgroup.kill (Linux 5.14+), else SIGKILL each.</summary>
    public void Kill()
    {
        string kill = System.IO.Path.Combine(Path, "cgroup.kill");
        if (File.Exists(kill))
        {
            WriteFile(kill, "1");
            return;
        }
        foreach (int pid in Processes()) Sys.TryKill(pid, Sys.SIGKILL);
    }

    /// <summary>Counters of memory.events / pids.events ("oom_kill 1"); absent files give none.</summary>
    public Dictionary<string, long> Events(string controller)
    {
        var events = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (string line in ReadOrEmpty(System.IO.Path.Combine(Path, $"{controller}.events")).Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            string[] kv = line.Split(' ');
            if (kv.Length == 2 && long.TryParse(kv[1], CultureInfo.InvariantCulture, out long n)) events[kv[0]] = n;
        }
        return events;
    }

    /// <summary>
    /// Tears the cgroup down whatever is left in it: kills every process, waits until the
    /// kernel reports it unpopulated (cgroup.events "populated 0": the processes have been
    /// reaped by their parents), then removes it. What a container's delete must do, so no
    /// cgroup is ever leaked.
    /// </summary>
    public void Destroy(TimeSpan timeout)
    {
        if (!Directory.Exists(Path)) return;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (Populated())
        {
            Kill();
            if (clock.Elapsed > timeout)
            {
                throw new CgroupException($"cgroup {Path}: still populated {timeout.TotalSeconds:F0} s after SIGKILL (processes: {string.Join(' ', Processes())})");
            }
            Thread.Sleep(10);
        }
        Delete();
    }

    /// <summary>cgroup.events "populated 1": a process lives in this cgroup or below.</summary>
    public bool Populated()
    {
        foreach (string line in ReadOrEmpty(System.IO.Path.Combine(Path, "cgroup.events")).Split('\n'))
        {
            if (line.StartsWith("populated ", StringComparison.Ordinal)) return line.Trim().EndsWith('1');
        }
        return Processes().Count > 0;
    }

    /// <summary>Removes the cgroup; it must be empty of processes (rmdir says EBUSY otherwise).</summary>
    public void Delete()
    {
        if (!Directory.Exists(Path)) return;
        try
        {
            Directory.Delete(Path);
        }
        catch (IOException e)
        {
            throw new CgroupException($"cgroup {Path}: cannot remove: {e.Message} (processes left: {string.Join(' ', Processes())})", e);
        }
    }

    /// <summary>
    /// Writes a control file in place (no create, no truncate: cgroupfs files exist or
    /// the controller is not enabled, and each write is one command to the kernel).
    /// </summary>
    internal static void WriteFile(string path, string value)
    {
        bool written;
        try
        {
            written = Sys.TryWriteExisting(path, System.Text.Encoding.UTF8.GetBytes(value));
        }
        catch (SysException e)
        {
            throw new CgroupException($"cgroup file {path}: writing '{value}' failed: {e.Message}", e);
        }
        if (!written)
        {
            string file = System.IO.Path.GetFileName(path);
            string controller = file.Contains('.') ? file[..file.IndexOf('.')] : file;
            throw new CgroupException($"cgroup file {path} does not exist (is the {controller} controller enabled for this cgroup?)");
        }
    }

    private static string ReadOrEmpty(string path) => Sys.TryReadFile(path) is { } bytes ? System.Text.Encoding.UTF8.GetString(bytes) : "";

    private static string Normalize(string relative)
    {
        string r = relative.Trim('/');
        if (r.Split('/').Any(p => p is ".." or ".")) throw new CgroupException($"cgroup path '{relative}' must not contain '.' or '..'");
        return r;
    }
}
