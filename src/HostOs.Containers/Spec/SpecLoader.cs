using System.Text.Json;

namespace HostOs.Containers.Spec;

/// <summary>Reads and validates an OCI bundle's config.json.</summary>
public static class SpecLoader
{
    public static RuntimeSpec Parse(string json, string source)
    {
        RuntimeSpec spec;
        try
        {
            spec = JsonSerializer.Deserialize(json, SpecJson.Default.RuntimeSpec)
                   ?? throw new SpecException(source, ["the document is empty (null)"]);
        }
        catch (JsonException e)
        {
            // System.Text.Json names the path ($.linux.foo) and what it could not map.
            throw new SpecException(source, [e.Message]);
        }
        var problems = SpecValidator.Validate(spec);
        if (problems.Count > 0) throw new SpecException(source, problems);
        return spec;
    }

    /// <summary>Loads BUNDLE/config.json; the root path is resolved against the bundle.</summary>
    public static (RuntimeSpec Spec, string RootPath) LoadBundle(string bundle)
    {
        string config = Path.Combine(bundle, "config.json");
        if (!File.Exists(config)) throw new FileNotFoundException($"bundle {bundle} has no config.json", config);
        RuntimeSpec spec = Parse(File.ReadAllText(config), config);
        string root = Path.GetFullPath(spec.Root!.Path!, Path.GetFullPath(bundle));
        if (!Directory.Exists(root)) throw new DirectoryNotFoundException($"{config}: root.path {root} is not a directory");
        return (spec, root);
    }

    /// <summary>A process.json (runc exec --process): strict, validated like config.json's process.</summary>
    public static Process ParseProcess(string json, string source)
    {
        Process process;
        try
        {
            process = JsonSerializer.Deserialize(json, SpecJson.Default.Process)
                      ?? throw new SpecException(source, ["the document is empty (null)"]);
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
