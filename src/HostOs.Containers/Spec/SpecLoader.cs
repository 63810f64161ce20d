using System.Text.Json;
using HostOs.Platform.Interop;

namespace HostOs.Containers.Spec;

/// <summary>Reads and validates an OCI bundle's config.json.</summary>
public static class SpecLoader
{
    public static RuntimeSpec Parse(string json, string source) => Parse(System.Text.Encoding.UTF8.GetBytes(json), source);

    public static RuntimeSpec Parse(ReadOnlySpan<byte> utf8, string source)
    {
        RuntimeSpec spec = ParseSaved(utf8, source);
        var problems = SpecValidator.Validate(spec);
        if (problems.Count > 0) throw new SpecException(source, problems);
        return spec;
    }

    /// <summary>
    /// The runtime's own copy of a container's config.json (start, exec, delete): read with the
    /// same rules, not validated again. It was validated before the container was created,
    /// and a container made by an earlier version must stay startable, execable and deletable
    /// even if a later one would refuse its spec.
    /// </summary>
    public static RuntimeSpec ParseSaved(ReadOnlySpan<byte> utf8, string source)
    {
        try
        {
            return SpecReader.Read(utf8);
        }
        catch (JsonException e)
        {
            // Our reader names the path ($.linux.foo); the JSON reader the line and byte.
            throw new SpecException(source, [e.Message]);
        }
    }

    /// <summary>Loads BUNDLE/config.json; the root path is resolved against the bundle.</summary>
    public static (RuntimeSpec Spec, string RootPath, byte[] Bytes) LoadBundle(string bundle)
    {
        string config = Path.Combine(bundle, "config.json");
        if (!File.Exists(config)) throw new FileNotFoundException($"bundle {bundle} has no config.json", config);
        byte[] bytes = Sys.ReadFile(config);
        RuntimeSpec spec = Parse(bytes, config);
        string root = Path.GetFullPath(spec.Root!.Path!, Path.GetFullPath(bundle));
        if (!Directory.Exists(root)) throw new DirectoryNotFoundException($"{config}: root.path {root} is not a directory");
        return (spec, root, bytes);
    }

    /// <summary>
    /// A spec made in memory (a workload's) for BUNDLE, validated as a config.json is; the
    /// root path is resolved against the bundle. No JSON is written or read.
    /// </summary>
    public static (RuntimeSpec Spec, string RootPath) ForBundle(RuntimeSpec spec, string bundle, string source)
    {
        var problems = SpecValidator.Validate(spec);
        if (problems.Count > 0) throw new SpecException(source, problems);
        string root = Path.GetFullPath(spec.Root!.Path!, Path.GetFullPath(bundle));
        if (!Directory.Exists(root)) throw new DirectoryNotFoundException($"{source}: root.path {root} is not a directory");
        return (spec, root);
    }

    /// <summary>A process.json (runc exec --process): strict, validated like config.json's process.</summary>
    public static Process ParseProcess(string json, string source)
    {
        Process process;
        try
        {
            process = SpecReader.ReadProcess(System.Text.Encoding.UTF8.GetBytes(json));
        }
        catch (JsonException e)
        {
            throw new SpecException(source, [e.Message]);
        }
        var problems = SpecValidator.ValidateProcess(process);
        if (problems.Count > 0) throw new SpecException(source, problems);
        return process;
    }

    public static string ToJson(RuntimeSpec spec) => JsonSerializer.Serialize(spec, SpecJson.Default.RuntimeSpec);
}
