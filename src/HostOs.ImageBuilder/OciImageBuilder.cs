using System.IO.Compression;
using System.Text.Json;
using System.Text.Json.Serialization;
using HostOs.Images;

namespace HostOs.ImageBuilder;

/// <summary>
/// A container image made from Debian packages and our own files (image/containers/*.json),
/// for system containers and for the tests' registry and app containers: no registry and
/// no Docker needed. The result is an OCI image layout with one gzip layer, reproducible:
/// GNU tar with sorted names, time 0 and owner root; gzip with no name or time.
/// </summary>
public sealed class OciImageDefinition
{
    public List<PackageDefinition> Packages { get; set; } = [];
    public List<FileDefinition> Files { get; set; } = [];
    public OciRunConfig Config { get; set; } = new();

    public static OciImageDefinition Load(string path)
    {
        try
        {
            return JsonSerializer.Deserialize(File.ReadAllText(path), OciDefinitionJson.Default.OciImageDefinition)
                   ?? throw new InvalidDataException($"{path}: empty document");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: {e.Message}", e);
        }
    }
}

/// <summary>The image config's run defaults (the OCI config's "config" object).</summary>
public sealed class OciRunConfig
{
    public List<string>? Entrypoint { get; init; }
    public List<string>? Cmd { get; init; }
    public List<string> Env { get; set; } = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"];
    public string? WorkingDir { get; init; }
    public string? User { get; init; }
    /// <summary>"80/tcp" and the like.</summary>
    public List<string> ExposedPorts { get; set; } = [];
}

internal static class OciImageBuilder
{
    /// <summary>Builds the image <paramref name="definitionPath"/> describes into the OCI layout <paramref name="layoutDir"/> as NAME:latest.</summary>
    public static void Build(string name, string definitionPath, string layoutDir, string workDir, Apt apt, string repoRoot)
    {
        OciImageDefinition def = OciImageDefinition.Load(definitionPath);
        var tree = new FsTree(usrMerge: true);
        foreach (string d in new[] { "/dev", "/proc", "/sys", "/etc", "/tmp", "/run", "/var" }) tree.AddDirectory(d, d == "/tmp" ? 0x3FF : 0x1ED);
        Builder.AddContents(tree, def.Packages, def.Files, apt, repoRoot);
        new ElfDependencies(def.Packages.Select(p => apt.Unpack(p.Name)).ToList()).Resolve(tree);
        string staging = Path.Combine(workDir, "oci-" + name);
        tree.Materialize(staging);

        if (Directory.Exists(layoutDir)) Directory.Delete(layoutDir, true);
        string blobs = Path.Combine(layoutDir, "blobs", "sha256");
        Directory.CreateDirectory(blobs);
        string tar = Path.Combine(workDir, $"oci-{name}.tar");
        Tool.Run("tar", ["--create", "--file", tar, "--directory", staging, "--sort=name", "--mtime=@0", "--owner=0", "--group=0",
            "--numeric-owner", "--format=pax", "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime", "."]);
        string diffId = "sha256:" + Apt.Sha256(tar);
        string gz = Path.Combine(workDir, $"oci-{name}.tar.gz");
        using (FileStream input = File.OpenRead(tar))
        using (FileStream output = File.Create(gz))
        using (var zip = new GZipStream(output, CompressionLevel.SmallestSize))
        {
            input.CopyTo(zip);
        }
        Descriptor layer = Move(gz, blobs, MediaTypes.OciLayerGzip);
        File.Delete(tar);
        Directory.Delete(staging, true);

        var config = new ImageConfig
        {
            Architecture = "amd64",
            Os = "linux",
            Config = new ImageConfig.ContainerConfig
            {
                Entrypoint = def.Config.Entrypoint,
                Cmd = def.Config.Cmd,
                Env = def.Config.Env,
                WorkingDir = def.Config.WorkingDir,
                User = def.Config.User,
                ExposedPorts = def.Config.ExposedPorts.Count == 0 ? null
                    : def.Config.ExposedPorts.ToDictionary(p => p, _ => JsonDocument.Parse("{}").RootElement),
            },
            Rootfs = new ImageConfig.RootFs { Type = "layers", DiffIds = [diffId] },
        };
        Descriptor configDescriptor = Write(JsonSerializer.SerializeToUtf8Bytes(config, HostOs.Images.ImageJson.Default.ImageConfig), blobs, MediaTypes.OciConfig);
        var manifest = new ImageManifest
        {
            SchemaVersion = 2,
            MediaType = MediaTypes.OciManifest,
            Config = configDescriptor,
            Layers = [layer],
        };
        Descriptor manifestDescriptor = Write(JsonSerializer.SerializeToUtf8Bytes(manifest, HostOs.Images.ImageJson.Default.ImageManifest), blobs, MediaTypes.OciManifest);
        manifestDescriptor.Platform = new Images.Platform { Architecture = "amd64", Os = "linux" };
        manifestDescriptor.Annotations = new() { ["org.opencontainers.image.ref.name"] = "latest" };
        var index = new ImageIndex { SchemaVersion = 2, MediaType = MediaTypes.OciIndex, Manifests = [manifestDescriptor] };
        File.WriteAllBytes(Path.Combine(layoutDir, "index.json"), JsonSerializer.SerializeToUtf8Bytes(index, HostOs.Images.ImageJson.Default.ImageIndex));
        File.WriteAllText(Path.Combine(layoutDir, "oci-layout"), "{\"imageLayoutVersion\":\"1.0.0\"}");
    }

    private static Descriptor Write(byte[] bytes, string blobs, string mediaType)
    {
        string hex = Digest.Of(bytes).Hex;
        File.WriteAllBytes(Path.Combine(blobs, hex), bytes);
        return new Descriptor { MediaType = mediaType, Digest = "sha256:" + hex, Size = bytes.Length };
    }

    private static Descriptor Move(string file, string blobs, string mediaType)
    {
        string hex = Apt.Sha256(file);
        long size = new FileInfo(file).Length;
        File.Move(file, Path.Combine(blobs, hex), overwrite: true);
        return new Descriptor { MediaType = mediaType, Digest = "sha256:" + hex, Size = size };
    }
}

[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
    ReadCommentHandling = JsonCommentHandling.Skip)]
[JsonSerializable(typeof(OciImageDefinition))]
internal sealed partial class OciDefinitionJson : JsonSerializerContext;
