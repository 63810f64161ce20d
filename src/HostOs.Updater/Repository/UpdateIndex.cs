using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using HostOs.Updater.Payload;
using NSec.Cryptography;

namespace HostOs.Updater.Repository;

/// <summary>
/// A channel's index in an update repository (docs/updates.md): static files any HTTP
/// server can serve. <c>CHANNEL/index.json</c> names the releases and their payloads (path,
/// size, SHA-256), and expires: a mirror that stops updating cannot freeze a fleet on an
/// old version, because machines refuse an expired index. <c>CHANNEL/index.json.sig</c> is
/// a signature block over "hostos-index-v1", a NUL and the index's exact bytes (the prefix
/// keeps an index signature from ever passing for a payload's, and back).
/// </summary>
public sealed class UpdateIndex
{
    public const int CurrentFormat = 1;
    public const long MaxBytes = 1 << 20;
    private static ReadOnlySpan<byte> Domain => "hostos-index-v1\0"u8;

    public int Format { get; set; } = CurrentFormat;
    public required string Channel { get; init; }
    public required DateTimeOffset Expires { get; init; }
    public DateTimeOffset Created { get; init; }
    public List<Release> Releases { get; set; } = [];

    public sealed class Release
    {
        public required string Version { get; init; }
        public PayloadRef? Full { get; set; }
        public List<PayloadRef> Deltas { get; set; } = [];
    }

    public sealed class PayloadRef
    {
        /// <summary>Relative to the repository's base URL: payloads/NAME.hup.</summary>
        public required string Path { get; init; }
        public required long Size { get; init; }
        public required string Sha256 { get; init; }
        /// <summary>For a delta: the version it applies to.</summary>
        public string? From { get; init; }
    }

    public byte[] ToJsonBytes() => JsonSerializer.SerializeToUtf8Bytes(this, IndexJson.Default.UpdateIndex);

    public static byte[] SignedBytes(ReadOnlySpan<byte> index) => [.. Domain, .. index];

    /// <summary>Checks the signature over the exact bytes, then parses, then refuses a wrong channel or an expired index. Every refusal is named.</summary>
    public static UpdateIndex Verify(byte[] index, byte[] signatures, IReadOnlyList<PublicKey> trusted, string channel, DateTimeOffset now)
    {
        if (index.Length > MaxBytes) throw new PayloadException($"the index is {index.Length} bytes, more than {MaxBytes}");
        if (trusted.Count == 0) throw new PayloadException("no trusted update keys: nothing can be verified");
        SignatureBlock block;
        try
        {
            block = JsonSerializer.Deserialize(signatures, PayloadJson.Default.SignatureBlock) ?? new SignatureBlock();
        }
        catch (JsonException e)
        {
            throw new PayloadException($"the index signature is not valid: {e.Message}");
        }
        PayloadFile.Signer(block, SignedBytes(index), trusted, "the index");
        UpdateIndex parsed;
        try
        {
            parsed = JsonSerializer.Deserialize(index, IndexJson.Default.UpdateIndex) ?? throw new PayloadException("the index is empty");
        }
        catch (JsonException e)
        {
            throw new PayloadException($"the index is not valid: {e.Message}");
        }
        if (parsed.Format != CurrentFormat) throw new PayloadException($"index format {parsed.Format} is not understood");
        if (parsed.Channel != channel) throw new PayloadException($"the index is for channel '{parsed.Channel}', not '{channel}'");
        if (parsed.Expires <= now)
        {
            throw new PayloadException($"the index expired at {parsed.Expires.UtcDateTime.ToString("u", CultureInfo.InvariantCulture)} (now {now.UtcDateTime.ToString("u", CultureInfo.InvariantCulture)}): a stale or frozen mirror");
        }
        foreach (Release r in parsed.Releases)
        {
            SemanticVersion.Parse(r.Version);
            foreach (PayloadRef p in (r.Full is null ? [] : new[] { r.Full }).Concat(r.Deltas))
            {
                if (p.Path.StartsWith('/') || p.Path.Contains("..", StringComparison.Ordinal) || p.Path.Contains("://", StringComparison.Ordinal))
                {
                    throw new PayloadException($"release {r.Version}: path '{p.Path}' is not relative to the repository");
                }
                if (p.Size < PayloadFile.HeaderLength) throw new PayloadException($"release {r.Version}: {p.Path} has size {p.Size}");
                PayloadManifest.CheckHash(p.Sha256, $"release {r.Version}: {p.Path}", "sha256");
            }
        }
        return parsed;
    }

    /// <summary>
    /// What to install from <paramref name="current"/>: the newest release above it, by a
    /// delta from exactly the current version when there is one, else its full payload; null
    /// when the current version is the newest.
    /// </summary>
    public (Release Release, PayloadRef Payload)? Choose(string current)
    {
        SemanticVersion now = SemanticVersion.Parse(current);
        Release? newest = Releases.Where(r => SemanticVersion.Parse(r.Version) > now)
            .OrderByDescending(r => SemanticVersion.Parse(r.Version)).FirstOrDefault();
        if (newest is null) return null;
        PayloadRef? payload = newest.Deltas.FirstOrDefault(d => d.From == current) ?? newest.Full;
        if (payload is null) throw new PayloadException($"release {newest.Version} has no full payload and no delta from {current}");
        return (newest, payload);
    }

    /// <summary>
    /// Writes CHANNEL/index.json and its signature for every payload in DIR/payloads (each
    /// verified with the signing keys' own public keys first): the repository tool.
    /// </summary>
    public static UpdateIndex Publish(string repository, string channel, IReadOnlyList<Key> keys, TimeSpan validFor, DateTimeOffset now)
    {
        string payloads = Path.Combine(repository, "payloads");
        var releases = new SortedDictionary<SemanticVersion, Release>();
        var trusted = keys.Select(k => k.PublicKey).ToList();
        foreach (string file in Directory.Exists(payloads) ? Directory.EnumerateFiles(payloads, "*.hup").Order(StringComparer.Ordinal).ToList() : [])
        {
            PayloadManifest m;
            using (FileStream f = File.OpenRead(file)) m = PayloadFile.ReadHead(f, trusted).Manifest;
            var v = SemanticVersion.Parse(m.Version);
            if (!releases.TryGetValue(v, out Release? release)) releases[v] = release = new Release { Version = m.Version };
            var reference = new PayloadRef
            {
                Path = "payloads/" + Path.GetFileName(file), Size = new FileInfo(file).Length,
                Sha256 = Sha256File(file), From = m.Source?.Version,
            };
            if (m.IsDelta) release.Deltas.Add(reference);
            else release.Full = release.Full is null ? reference : throw new PayloadException($"two full payloads for {m.Version}: {release.Full.Path} and {reference.Path}");
        }
        var index = new UpdateIndex
        {
            Channel = channel, Created = now, Expires = now + validFor, Releases = [.. releases.Values],
        };
        string dir = Path.Combine(repository, channel);
        Directory.CreateDirectory(dir);
        byte[] bytes = index.ToJsonBytes();
        byte[] sig = PayloadFile.SignatureBlockFor(SignedBytes(bytes), keys);
        // The signature first: a reader that sees the new index always finds its signature (an old index with a new signature fails, and is retried).
        HostOs.Platform.AtomicFile.Write(Path.Combine(dir, "index.json.sig"), sig, durable: true);
        HostOs.Platform.AtomicFile.Write(Path.Combine(dir, "index.json"), bytes, durable: true);
        return index;
    }

    private static string Sha256File(string path)
    {
        using FileStream f = File.OpenRead(path);
        return Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(f));
    }

    public override string ToString() => Encoding.UTF8.GetString(ToJsonBytes());
}

[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    WriteIndented = true)]
[JsonSerializable(typeof(UpdateIndex))]
internal sealed partial class IndexJson : JsonSerializerContext;
