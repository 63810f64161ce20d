using System.Text.RegularExpressions;

namespace HostOs.Images;

/// <summary>
/// An image reference as Docker and the distribution spec write it:
/// [REGISTRY[:PORT]/]REPOSITORY[:TAG][@sha256:DIGEST]. A first component with a dot or a
/// port, or "localhost", is a registry; otherwise the registry is Docker Hub and a
/// one-component repository gets "library/". Without tag or digest the tag is "latest".
/// </summary>
public sealed partial record ImageReference(string Registry, string Repository, string? Tag, string? Digest)
{
    public const string DockerHub = "docker.io";

    [GeneratedRegex(@"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")]
    private static partial Regex RepositoryPattern();

    [GeneratedRegex(@"^[\w][\w.-]{0,127}$")]
    private static partial Regex TagPattern();

    [GeneratedRegex(@"^[a-zA-Z0-9.-]+(:[0-9]{1,5})?$|^\[[0-9a-fA-F:]+\](:[0-9]{1,5})?$")]
    private static partial Regex RegistryPattern();

    public static ImageReference Parse(string text)
    {
        string rest = text;
        string? digest = null, tag = null;
        int at = rest.IndexOf('@');
        if (at >= 0)
        {
            digest = rest[(at + 1)..];
            Images.Digest.Parse(digest, $"image reference '{text}'");
            rest = rest[..at];
        }
        int slash = rest.IndexOf('/');
        string registry = DockerHub;
        if (slash > 0)
        {
            string first = rest[..slash];
            if (first.Contains('.') || first.Contains(':') || first == "localhost")
            {
                registry = first;
                rest = rest[(slash + 1)..];
            }
        }
        int colon = rest.LastIndexOf(':');
        if (colon > rest.LastIndexOf('/'))
        {
            tag = rest[(colon + 1)..];
            rest = rest[..colon];
        }
        if (registry == DockerHub && !rest.Contains('/')) rest = "library/" + rest;
        if (!RegistryPattern().IsMatch(registry)) throw new ImageException($"image reference '{text}': '{registry}' is not a registry host");
        if (!RepositoryPattern().IsMatch(rest)) throw new ImageException($"image reference '{text}': '{rest}' is not a repository name (lowercase letters, digits, . _ - and /)");
        if (tag is not null && !TagPattern().IsMatch(tag)) throw new ImageException($"image reference '{text}': '{tag}' is not a tag");
        if (tag is null && digest is null) tag = "latest";
        return new ImageReference(registry, rest, tag, digest);
    }

    /// <summary>What the manifest is fetched by: the digest when there is one, else the tag.</summary>
    public string Reference => Digest ?? Tag!;

    /// <summary>The registry's API host: Docker Hub's is registry-1.docker.io.</summary>
    public string Host => Registry == DockerHub ? "registry-1.docker.io" : Registry;

    public override string ToString() => $"{Registry}/{Repository}{(Tag is null ? "" : ":" + Tag)}{(Digest is null ? "" : "@" + Digest)}";
}
