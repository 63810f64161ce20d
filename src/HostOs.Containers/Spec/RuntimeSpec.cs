using System.Text.Json;
using System.Text.Json.Serialization;

namespace HostOs.Containers.Spec;

// The OCI runtime specification's config.json (https://github.com/opencontainers/runtime-spec,
// config.md and config-linux.md, v1.2). Every field of the spec is modelled so that any
// valid bundle parses; SpecValidator then rejects, by JSON path, what HostOS does not
// implement. Unknown fields are rejected by the parser itself.

public sealed class RuntimeSpec
{
    public string? OciVersion { get; set; }
    public Root? Root { get; set; }
    public List<Mount>? Mounts { get; set; }
    public Process? Process { get; set; }
    public string? Hostname { get; set; }
    public string? Domainname { get; set; }
    public Hooks? Hooks { get; set; }
    public Dictionary<string, string>? Annotations { get; set; }
    public LinuxSpec? Linux { get; set; }
    // Other platforms: present only to name them in a clear error.
    public JsonElement? Windows { get; set; }
    public JsonElement? Solaris { get; set; }
    public JsonElement? Vm { get; set; }
    public JsonElement? Zos { get; set; }
    public JsonElement? Freebsd { get; set; }
}

public sealed class Root
{
    public string? Path { get; set; }
    public bool Readonly { get; set; }
}

public sealed class Mount
{
    public string? Destination { get; set; }
    public string? Source { get; set; }
    public List<string>? Options { get; set; }
    public string? Type { get; set; }
    public List<IdMapping>? UidMappings { get; set; }
    public List<IdMapping>? GidMappings { get; set; }
}

public sealed class Process
{
    public bool Terminal { get; set; }
    public ConsoleSize? ConsoleSize { get; set; }
    public string? Cwd { get; set; }
    public List<string>? Env { get; set; }
    public List<string>? Args { get; set; }
    public string? CommandLine { get; set; }
    public List<Rlimit>? Rlimits { get; set; }
    public string? ApparmorProfile { get; set; }
    public Capabilities? Capabilities { get; set; }
    public bool NoNewPrivileges { get; set; }
    public int? OomScoreAdj { get; set; }
    public string? SelinuxLabel { get; set; }
    public User? User { get; set; }
    public JsonElement? IoPriority { get; set; }
    public JsonElement? Scheduler { get; set; }
    public JsonElement? ExecCPUAffinity { get; set; }
}

public sealed class ConsoleSize
{
    public uint Height { get; set; }
    public uint Width { get; set; }
}

public sealed class Rlimit
{
    public string? Type { get; set; }
    public ulong Soft { get; set; }
    public ulong Hard { get; set; }
}

public sealed class Capabilities
{
    public List<string>? Bounding { get; set; }
    public List<string>? Effective { get; set; }
    public List<string>? Inheritable { get; set; }
    public List<string>? Permitted { get; set; }
    public List<string>? Ambient { get; set; }
}

public sealed class User
{
    public uint Uid { get; set; }
    public uint Gid { get; set; }
    public uint? Umask { get; set; }
    public List<uint>? AdditionalGids { get; set; }
    public string? Username { get; set; }
}

public sealed class Hooks
{
    public List<Hook>? Prestart { get; set; }
    public List<Hook>? CreateRuntime { get; set; }
    public List<Hook>? CreateContainer { get; set; }
    public List<Hook>? StartContainer { get; set; }
    public List<Hook>? Poststart { get; set; }
    public List<Hook>? Poststop { get; set; }
}

public sealed class Hook
{
    public string? Path { get; set; }
    public List<string>? Args { get; set; }
    public List<string>? Env { get; set; }
    public int? Timeout { get; set; }
}

public sealed class IdMapping
{
    public uint ContainerID { get; set; }
    public uint HostID { get; set; }
    public uint Size { get; set; }
}

[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    WriteIndented = true)]
[JsonSerializable(typeof(RuntimeSpec))]
[JsonSerializable(typeof(Process))]
internal sealed partial class SpecJson : JsonSerializerContext;
