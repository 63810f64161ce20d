using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.RegularExpressions;

namespace HostOs.Images;

/// <summary>An image that cannot be stored, read or used; the message names the blob or entry.</summary>
public sealed class ImageException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>A content digest, "sha256:" and 64 lowercase hex digits (the only algorithm accepted).</summary>
public readonly partial record struct Digest(string Hex)
{
    [GeneratedRegex(@"\Asha256:[a-f0-9]{64}\z")]
    private static partial Regex Pattern();

    public static Digest Parse(string text, string what)
    {
        if (text is null || !Pattern().IsMatch(text))
        {
            throw new ImageException($"{what}: '{text}' is not a sha256 digest (sha256: and 64 lowercase hex digits)");
        }
        return new Digest(text[7..]);
    }

    public static bool TryParse(string? text, out Digest digest)
    {
        digest = default;
        if (text is null || !Pattern().IsMatch(text)) return false;
        digest = new Digest(text[7..]);
        return true;
    }

    public static Digest Of(ReadOnlySpan<byte> data) => new(Convert.ToHexStringLower(SHA256.HashData(data)));
    public static Digest FromHash(byte[] sha256) => new(Convert.ToHexStringLower(sha256));
    public override string ToString() => "sha256:" + Hex;
}

public static class MediaTypes
{
    public const string OciIndex = "application/vnd.oci.image.index.v1+json";
    public const string OciManifest = "application/vnd.oci.image.manifest.v1+json";
    public const string OciConfig = "application/vnd.oci.image.config.v1+json";
    public const string OciLayer = "application/vnd.oci.image.layer.v1.tar";
    public const string OciLayerGzip = "application/vnd.oci.image.layer.v1.tar+gzip";
    public const string OciLayerZstd = "application/vnd.oci.image.layer.v1.tar+zstd";
    public const string DockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json";
    public const string DockerManifest = "application/vnd.docker.distribution.manifest.v2+json";
    public const string DockerConfig = "application/vnd.docker.container.image.v1+json";
    public const string DockerLayerGzip = "application/vnd.docker.image.rootfs.diff.tar.gzip";
    public const string DockerLayer = "application/vnd.docker.image.rootfs.diff.tar";

    public static bool IsIndex(string? t) => t is OciIndex or DockerManifestList;
    public static bool IsManifest(string? t) => t is OciManifest or DockerManifest;
}

public sealed class Descriptor
{
    public string? MediaType { get; set; }
    public string? Digest { get; set; }
    public long Size { get; set; }
    public Platform? Platform { get; set; }
    public Dictionary<string, string>? Annotations { get; set; }
    public List<string>? Urls { get; set; }
    public string? ArtifactType { get; set; }
}

public sealed class Platform
{
    public string? Architecture { get; set; }
    public string? Os { get; set; }
    public string? Variant { get; set; }
    [JsonPropertyName("os.version")] public string? OsVersion { get; set; }
    [JsonPropertyName("os.features")] public List<string>? OsFeatures { get; set; }
}

/// <summary>An OCI image index or a Docker manifest list.</summary>
public sealed class ImageIndex
{
    public int SchemaVersion { get; set; }
    public string? MediaType { get; set; }
    public List<Descriptor> Manifests { get; set; } = [];
    public Dictionary<string, string>? Annotations { get; set; }
}

/// <summary>An OCI image manifest or a Docker image manifest (schema 2).</summary>
public sealed class ImageManifest
{
    public int SchemaVersion { get; set; }
    public string? MediaType { get; set; }
    public Descriptor? Config { get; set; }
    public List<Descriptor> Layers { get; set; } = [];
    public Dictionary<string, string>? Annotations { get; set; }
}

/// <summary>The parts of an image configuration a runtime uses.</summary>
public sealed class ImageConfig
{
    public string? Architecture { get; set; }
    public string? Os { get; set; }
    public ContainerConfig? Config { get; set; }
    public RootFs? Rootfs { get; set; }

    public sealed class ContainerConfig
    {
        [JsonPropertyName("User")] public string? User { get; set; }
        [JsonPropertyName("Env")] public List<string>? Env { get; set; }
        [JsonPropertyName("Entrypoint")] public List<string>? Entrypoint { get; set; }
        [JsonPropertyName("Cmd")] public List<string>? Cmd { get; set; }
        [JsonPropertyName("WorkingDir")] public string? WorkingDir { get; set; }
        [JsonPropertyName("ExposedPorts")] public Dictionary<string, JsonElement>? ExposedPorts { get; set; }
        [JsonPropertyName("Volumes")] public Dictionary<string, JsonElement>? Volumes { get; set; }
        [JsonPropertyName("Labels")] public Dictionary<string, string>? Labels { get; set; }
        [JsonPropertyName("StopSignal")] public string? StopSignal { get; set; }
    }

    public sealed class RootFs
    {
        public string? Type { get; set; }
        [JsonPropertyName("diff_ids")] public List<string> DiffIds { get; set; } = [];
    }
}

/// <summary>One image of a `docker save` archive's manifest.json.</summary>
public sealed class DockerSaveEntry
{
    [JsonPropertyName("Config")] public string? Config { get; set; }
    [JsonPropertyName("RepoTags")] public List<string>? RepoTags { get; set; }
    [JsonPropertyName("Layers")] public List<string> Layers { get; set; } = [];
}

/// <summary>The store's own record of the images it holds (images.json).</summary>
public sealed class StoredImage
{
    public string Name { get; set; } = "";
    public string Manifest { get; set; } = "";
    public string Config { get; set; } = "";
    public List<StoredLayer> Layers { get; set; } = [];
    public string Created { get; set; } = "";
}

public sealed class StoredLayer
{
    public string Digest { get; set; } = "";
    public string MediaType { get; set; } = "";
    public long Size { get; set; }
    public string DiffId { get; set; } = "";
}

// Image documents are extensible: unknown fields are ignored here (unlike config.json).
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull, WriteIndented = false)]
[JsonSerializable(typeof(ImageIndex))]
[JsonSerializable(typeof(ImageManifest))]
[JsonSerializable(typeof(ImageConfig))]
[JsonSerializable(typeof(List<DockerSaveEntry>))]
[JsonSerializable(typeof(List<StoredImage>))]
[JsonSerializable(typeof(JsonElement))]
internal sealed partial class ImageJson : JsonSerializerContext;
