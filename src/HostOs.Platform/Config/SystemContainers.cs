using System.Globalization;

namespace HostOs.Platform.Config;

/// <summary>
/// System containers (LinuxKit's habit): declared in the image definition, their images
/// baked into the read-only root, started by the init at boot with no network needed.
/// <c>onboot</c> steps run to completion, in order, before any service; <c>services</c>
/// are supervised like the init's other services (order, restart with backoff, health).
/// </summary>
public sealed class SystemContainers
{
    public List<OnbootContainer> Onboot { get; set; } = [];
    public List<ServiceContainer> Services { get; set; } = [];

    /// <summary>Every container's name and problem at once; <paramref name="images"/> are the baked image names.</summary>
    public void Validate(string source, ISet<string> images, ISet<string> serviceNames, List<string> errors)
    {
        var names = new HashSet<string>(serviceNames, StringComparer.Ordinal);
        foreach (ContainerDefinition c in Onboot.Concat<ContainerDefinition>(Services))
        {
            c.Validate(source, images, errors);
            if (!names.Add(c.Name)) errors.Add($"{source}: container '{c.Name}' has the name of another service or container");
        }
        foreach (ServiceContainer s in Services)
        {
            foreach (string dep in s.After)
            {
                if (!names.Contains(dep) || Onboot.Any(o => o.Name == dep))
                {
                    errors.Add($"{source}: container '{s.Name}' is after '{dep}', which is no service or service container");
                }
            }
        }
    }
}

public enum ContainerNetwork { None, Host, Bridge }

/// <summary>What onboot steps and service containers have in common.</summary>
public abstract class ContainerDefinition
{
    public required string Name { get; init; }
    /// <summary>A baked image, by the name the image definition gives it.</summary>
    public required string Image { get; init; }
    /// <summary>Replaces the image's Entrypoint (and then drops its Cmd), as docker run --entrypoint.</summary>
    public List<string>? Entrypoint { get; init; }
    /// <summary>Replaces the image's Cmd.</summary>
    public List<string>? Command { get; init; }
    /// <summary>NAME=value, after (and over) the image's Env.</summary>
    public List<string> Env { get; set; } = [];
    public string? WorkingDir { get; init; }
    /// <summary>UID[:GID], numeric (the image's /etc/passwd is not consulted for names).</summary>
    public string? User { get; init; }
    /// <summary>The exact capability set (CAP_ names); absent: docker's default fourteen.</summary>
    public List<string>? Capabilities { get; init; }
    public List<BindMount> Binds { get; set; } = [];
    /// <summary>Directories that get a fresh tmpfs.</summary>
    public List<string> Tmpfs { get; set; } = [];
    /// <summary>
    /// none: a network namespace of its own with only loopback; bridge: its own, with an
    /// address on the host's bridge and outbound access through it (NAT); host: the host's.
    /// </summary>
    public ContainerNetwork Network { get; set; } = ContainerNetwork.None;
    /// <summary>The root is read-only unless this is false (then writes go to a tmpfs, lost at exit).</summary>
    public bool ReadonlyRootfs { get; set; } = true;
    /// <summary>Host TCP ports relayed to ports of the container (networks none and bridge).</summary>
    public List<PortMapping> Ports { get; set; } = [];
    public string? Hostname { get; init; }
    public ContainerResources? Resources { get; init; }
    public int StopTimeoutSeconds { get; set; } = 10;

    /// <summary>What logs and the API call it: "container" (a system container) or "app".</summary>
    [System.Text.Json.Serialization.JsonIgnore] public virtual string Kind => "container";

    internal virtual void Validate(string source, ISet<string> images, List<string> errors)
    {
        string at = $"{source}: container '{Name}'";
        if (!IsName(Name)) errors.Add($"{at}: the name must be lower-case letters, digits, '_', '.' or '-' (at most 63)");
        ValidateImage(at, images, errors);
        if (Entrypoint is { Count: 0 }) errors.Add($"{at}: entrypoint is empty");
        foreach (string e in Env)
        {
            if (e.IndexOf('=') <= 0) errors.Add($"{at}: env entry '{e}' is not NAME=value");
        }
        if (WorkingDir is not null && !WorkingDir.StartsWith('/')) errors.Add($"{at}: workingDir '{WorkingDir}' must be absolute");
        if (User is not null && ParseUser(User) is null) errors.Add($"{at}: user '{User}' is not UID or UID:GID");
        foreach (string cap in Capabilities ?? [])
        {
            if (!cap.StartsWith("CAP_", StringComparison.Ordinal) || cap.Length < 5 || !cap[4..].All(c => char.IsAsciiLetterUpper(c) || c == '_'))
            {
                errors.Add($"{at}: capability '{cap}' is not a CAP_ name");
            }
        }
        foreach (BindMount b in Binds)
        {
            if (!b.Source.StartsWith('/') || !b.Target.StartsWith('/')) errors.Add($"{at}: bind '{b.Source}' -> '{b.Target}': both paths must be absolute");
            if (HasDotDot(b.Source) || HasDotDot(b.Target)) errors.Add($"{at}: bind '{b.Source}' -> '{b.Target}': '..' is not allowed");
        }
        foreach (string t in Tmpfs)
        {
            if (!t.StartsWith('/') || HasDotDot(t)) errors.Add($"{at}: tmpfs '{t}' must be an absolute path without '..'");
        }
        if (Hostname is not null && (Hostname.Length is 0 or > 64 || !Hostname.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '.')))
        {
            errors.Add($"{at}: hostname '{Hostname}' is not a host name");
        }
        if (Hostname is not null && Network == ContainerNetwork.Host)
        {
            // The UTS namespace goes with the network one: a host-network container keeps the host's name.
            errors.Add($"{at}: hostname cannot be set with network 'host'");
        }
        Resources?.Validate(at, errors);
        foreach (PortMapping p in Ports)
        {
            if (p.Host is < 1 or > 65535 || p.Container is < 1 or > 65535) errors.Add($"{at}: port {p.Host} -> {p.Container}: ports are 1..65535");
        }
        if (Ports.Count > 0 && Network == ContainerNetwork.Host) errors.Add($"{at}: ports are published from a private network ('none' or 'bridge'); with 'host' the container's ports are the host's");
        if (Ports.Select(p => p.Host).Distinct().Count() != Ports.Count) errors.Add($"{at}: a host port is published twice");
        if (StopTimeoutSeconds is < 1 or > 600) errors.Add($"{at}: stopTimeoutSeconds must be 1..600");
    }

    /// <summary>A system container's image is one of the baked ones.</summary>
    private protected virtual void ValidateImage(string at, ISet<string> images, List<string> errors)
    {
        if (!images.Contains(Image)) errors.Add($"{at}: image '{Image}' is not among the image's baked images ({string.Join(", ", images.Order())})");
    }

    /// <summary>^[a-z0-9][a-z0-9_.-]{0,62}$ (no Regex: PID 1 parses this, and Regex costs it a megabyte).</summary>
    public static bool IsName(string name) =>
        name.Length is > 0 and <= 63 && (char.IsAsciiLetterLower(name[0]) || char.IsAsciiDigit(name[0]))
        && name.All(c => char.IsAsciiLetterLower(c) || char.IsAsciiDigit(c) || c is '_' or '.' or '-');

    internal static bool HasDotDot(string path) => path.Split('/').Contains("..");

    /// <summary>(uid, gid) from "UID" or "UID:GID"; null when it is neither.</summary>
    public static (uint Uid, uint Gid)? ParseUser(string user)
    {
        string[] parts = user.Split(':');
        if (parts.Length > 2) return null;
        if (!uint.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out uint uid)) return null;
        uint gid = uid;
        if (parts.Length == 2 && !uint.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out gid)) return null;
        return (uid, gid);
    }
}

/// <summary>Runs to completion before services start; a failure fails the boot's assessment.</summary>
public sealed class OnbootContainer : ContainerDefinition
{
    public int TimeoutSeconds { get; set; } = 300;

    internal override void Validate(string source, ISet<string> images, List<string> errors)
    {
        base.Validate(source, images, errors);
        if (TimeoutSeconds is < 1 or > 3600) errors.Add($"{source}: container '{Name}': timeoutSeconds must be 1..3600");
    }
}

/// <summary>A long-running container, supervised as a service.</summary>
public class ServiceContainer : ContainerDefinition
{
    public RestartPolicy Restart { get; set; } = RestartPolicy.Always;
    public List<string> After { get; set; } = [];
    public bool Required { get; set; } = true;
    public HealthProbe? Health { get; init; }

    internal override void Validate(string source, ISet<string> images, List<string> errors)
    {
        base.Validate(source, images, errors);
        Health?.Validate($"{source}: container '{Name}'", errors);
    }
}

public sealed class PortMapping
{
    public required int Host { get; init; }
    public required int Container { get; init; }
}

public sealed class BindMount
{
    public required string Source { get; init; }
    public required string Target { get; init; }
    public bool Readonly { get; init; }
}

public sealed class ContainerResources
{
    public long? MemoryMiB { get; init; }
    /// <summary>CPU time as a number of CPUs (0.5 = half of one), through cpu.max.</summary>
    public double? Cpus { get; init; }
    public long? Pids { get; init; }

    internal void Validate(string at, List<string> errors)
    {
        if (MemoryMiB is < 4) errors.Add($"{at}: resources.memoryMiB must be at least 4");
        if (Cpus is <= 0 or > 1024) errors.Add($"{at}: resources.cpus must be above 0");
        if (Pids is < 1) errors.Add($"{at}: resources.pids must be at least 1");
    }
}

public enum ProbeType { Exec, Tcp, Http }

/// <summary>
/// A health probe. The container is ready at its first success; once ready, <c>retries</c>
/// failures in a row make it unhealthy, and it is restarted. Failures in the first
/// <c>startPeriodSeconds</c> do not count. tcp and http probes connect to 127.0.0.1 in the
/// container's network namespace; exec probes run inside the container.
/// </summary>
public sealed class HealthProbe
{
    public required ProbeType Type { get; init; }
    public List<string>? Exec { get; init; }
    public int? Port { get; init; }
    /// <summary>http: the path requested; a 2xx or 3xx status is healthy.</summary>
    public string Path { get; set; } = "/";
    public int IntervalSeconds { get; set; } = 5;
    public int TimeoutSeconds { get; set; } = 3;
    public int Retries { get; set; } = 3;
    public int StartPeriodSeconds { get; set; }

    internal void Validate(string at, List<string> errors)
    {
        switch (Type)
        {
            case ProbeType.Exec:
                if (Exec is null or { Count: 0 }) errors.Add($"{at}: health: an exec probe needs exec");
                if (Port is not null) errors.Add($"{at}: health: an exec probe has no port");
                break;
            default:
                if (Port is not (>= 1 and <= 65535)) errors.Add($"{at}: health: a {Type.ToString().ToLowerInvariant()} probe needs a port 1..65535");
                if (Exec is not null) errors.Add($"{at}: health: only an exec probe has exec");
                break;
        }
        if (Type == ProbeType.Http && (!Path.StartsWith('/') || Path.Any(c => c is '\r' or '\n' or ' ')))
        {
            errors.Add($"{at}: health: path '{Path}' must start with '/' and hold no spaces or line breaks");
        }
        if (IntervalSeconds is < 1 or > 3600) errors.Add($"{at}: health: intervalSeconds must be 1..3600");
        if (TimeoutSeconds is < 1 or > 600) errors.Add($"{at}: health: timeoutSeconds must be 1..600");
        if (Retries is < 1 or > 100) errors.Add($"{at}: health: retries must be 1..100");
        if (StartPeriodSeconds is < 0 or > 3600) errors.Add($"{at}: health: startPeriodSeconds must be 0..3600");
    }
}

/// <summary>
/// An image baked into the root by the image builder: /usr/lib/hostos/images/NAME.json, its
/// layers unpacked (overlayfs layers, named by diff id) under /usr/lib/hostos/images/layers.
/// The root is read-only and verified as a whole, so the init trusts these as they are.
/// </summary>
public sealed class BakedImage
{
    public const string Directory = "/usr/lib/hostos/images";

    public required string Name { get; init; }
    /// <summary>The manifest's digest, as the OCI layout named it.</summary>
    public required string Manifest { get; init; }
    /// <summary>Diff id hex digits, bottom layer first: directories under layers/.</summary>
    public required List<string> Layers { get; init; }
    public List<string>? Entrypoint { get; init; }
    public List<string>? Cmd { get; init; }
    public List<string> Env { get; set; } = [];
    public string? WorkingDir { get; init; }
    public string? User { get; init; }

    public static string PathOf(string name) => System.IO.Path.Combine(Directory, name + ".json");
    public static string LayerPath(string diffIdHex) => System.IO.Path.Combine(Directory, "layers", diffIdHex);
}
