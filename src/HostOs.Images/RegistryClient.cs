using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace HostOs.Images;

/// <summary>How to reach registries: credentials, plain-HTTP registries, extra CAs, parallelism.</summary>
public sealed class RegistryOptions
{
    /// <summary>Registry host[:port] → (user, password), used for basic auth and to obtain tokens.</summary>
    public Dictionary<string, (string User, string Password)> Credentials { get; init; } = [];
    /// <summary>Registries spoken to over plain HTTP (as Docker's insecure-registries).</summary>
    public HashSet<string> Insecure { get; init; } = [];
    /// <summary>PEM file of CA certificates trusted for registries, besides the system's.</summary>
    public string? CaCertificates { get; init; }
    public int ParallelDownloads { get; init; } = 3;
    public int Attempts { get; init; } = 5;
    public TimeSpan Timeout { get; init; } = TimeSpan.FromMinutes(5);
    /// <summary>A blob download with no data for this long is cut and resumed.</summary>
    public TimeSpan IdleTimeout { get; init; } = TimeSpan.FromSeconds(60);
}

/// <summary>
/// OCI distribution spec client (docs/images.md, "Registry"): pulls by tag or digest over
/// HTTPS or HTTP, with bearer-token and basic auth; indexes resolved to linux/amd64; layers
/// downloaded in parallel into ROOT/downloads/HEX.partial and resumed with an HTTP range
/// after an interruption (even by a crash: the partial file stays); nothing is used before
/// its digest is checked. Push is there for tests and image pipelines.
/// </summary>
public sealed class RegistryClient : IDisposable
{
    private static readonly string[] ManifestTypes = [MediaTypes.OciIndex, MediaTypes.OciManifest, MediaTypes.DockerManifestList, MediaTypes.DockerManifest];
    private readonly HttpClient _http;
    private readonly RegistryOptions _options;
    private readonly ConcurrentDictionary<string, AuthenticationHeaderValue> _auth = new();

    public RegistryClient(RegistryOptions options, HttpMessageHandler? handler = null)
    {
        _options = options;
        if (handler is null)
        {
            var sockets = new SocketsHttpHandler { AllowAutoRedirect = true, MaxAutomaticRedirections = 10, ConnectTimeout = TimeSpan.FromSeconds(30) };
            if (options.CaCertificates is string pem)
            {
                var extra = new X509Certificate2Collection();
                extra.ImportFromPemFile(pem);
                sockets.SslOptions.RemoteCertificateValidationCallback = (_, certificate, chain, errors) =>
                {
                    if (errors == SslPolicyErrors.None) return true;
                    if (certificate is null || (errors & ~SslPolicyErrors.RemoteCertificateChainErrors) != 0) return false;
                    using var custom = new X509Chain();
                    custom.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
                    custom.ChainPolicy.CustomTrustStore.AddRange(extra);
                    custom.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
                    return custom.Build(new X509Certificate2(certificate));
                };
            }
            handler = sockets;
        }
        _http = new HttpClient(handler) { Timeout = options.Timeout };
    }

    public void Dispose() => _http.Dispose();

    private string Base(ImageReference r) => $"{(_options.Insecure.Contains(r.Registry) ? "http" : "https")}://{r.Host}/v2/{r.Repository}";

    /// <summary>
    /// Pulls REFERENCE into the store under its name: manifest (and index) verified, config
    /// and layers downloaded in parallel and verified, then added (unpacked) by the store.
    /// </summary>
    public async Task<StoredImage> PullAsync(string reference, ImageStore store, Action<string>? progress = null, CancellationToken cancel = default)
    {
        ImageReference r = ImageReference.Parse(reference);
        string scope = $"repository:{r.Repository}:pull";
        var documents = new ConcurrentDictionary<string, byte[]>();
        var (topBytes, topType, topDigest) = await FetchManifestAsync(r, r.Reference, scope, cancel);
        documents[topDigest.ToString()] = topBytes;
        var top = new Descriptor { MediaType = topType, Digest = topDigest.ToString(), Size = topBytes.Length };

        Descriptor manifestDescriptor = top;
        if (MediaTypes.IsIndex(topType))
        {
            ImageIndex index = JsonSerializer.Deserialize(topBytes, ImageJson.Default.ImageIndex) ?? throw new ImageException($"{r}: empty index");
            manifestDescriptor = index.Manifests.FirstOrDefault(ImageStore.IsAmd64Manifest)
                ?? throw new ImageException($"{r}: no linux/amd64 image in its index (it has: {string.Join(", ", index.Manifests.Select(m => $"{m.Platform?.Os}/{m.Platform?.Architecture}"))})");
            var (bytes, type, digest) = await FetchManifestAsync(r, manifestDescriptor.Digest!, scope, cancel);
            if (digest.ToString() != manifestDescriptor.Digest) throw new ImageException($"{r}: manifest {digest} is not the index's {manifestDescriptor.Digest}");
            documents[digest.ToString()] = bytes;
            manifestDescriptor.MediaType ??= type;
        }
        ImageManifest manifest = JsonSerializer.Deserialize(documents[manifestDescriptor.Digest!], ImageJson.Default.ImageManifest)
                                 ?? throw new ImageException($"{r}: empty manifest");
        if (manifest.Config is null) throw new ImageException($"{r}: manifest has no config");

        // Config and layers, a few at a time, each verified before it enters the store.
        var blobs = new List<Descriptor> { manifest.Config };
        blobs.AddRange(manifest.Layers);
        using var gate = new SemaphoreSlim(Math.Max(1, _options.ParallelDownloads));
        // The same blob may be listed twice (a layer repeated): one download each.
        await Task.WhenAll(blobs.DistinctBy(d => d.Digest).Select(async d =>
        {
            await gate.WaitAsync(cancel);
            try { await DownloadBlobAsync(r, d, store, scope, progress, cancel); }
            finally { gate.Release(); }
        }));

        string name = r.Tag is not null ? $"{r.Registry}/{r.Repository}:{r.Tag}" : $"{r.Registry}/{r.Repository}@{r.Digest}";
        return store.Add([name], top, new Documents(documents, r));
    }

    /// <summary>GET a manifest by tag or digest; its digest is computed, and must match what was asked or announced.</summary>
    private async Task<(byte[] Bytes, string MediaType, Digest Digest)> FetchManifestAsync(ImageReference r, string reference, string scope, CancellationToken cancel)
    {
        using HttpResponseMessage response = await SendAsync(r, scope, () =>
        {
            var request = new HttpRequestMessage(HttpMethod.Get, $"{Base(r)}/manifests/{reference}");
            foreach (string t in ManifestTypes) request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue(t));
            return request;
        }, cancel);
        await EnsureSuccess(response, $"{r.Registry}/{r.Repository}: manifest {reference}");
        if (response.Content.Headers.ContentLength > 4 << 20) throw new ImageException($"{r}: manifest larger than 4 MiB");
        byte[] bytes = await response.Content.ReadAsByteArrayAsync(cancel);
        if (bytes.Length > 4 << 20) throw new ImageException($"{r}: manifest larger than 4 MiB");
        Digest digest = Digest.Of(bytes);
        if (reference.StartsWith("sha256:", StringComparison.Ordinal) && reference != digest.ToString())
        {
            throw new ImageException($"{r}: the registry's manifest hashes to {digest}, not the requested {reference}");
        }
        if (response.Headers.TryGetValues("Docker-Content-Digest", out var announced) && announced.First() != digest.ToString())
        {
            throw new ImageException($"{r}: the registry announced {announced.First()} but the manifest hashes to {digest}");
        }
        string type = response.Content.Headers.ContentType?.MediaType ?? "";
        if (!ManifestTypes.Contains(type))
        {
            // Some registries answer application/json: the document says what it is.
            using var doc = JsonDocument.Parse(bytes);
            type = doc.RootElement.TryGetProperty("mediaType", out var mt) ? mt.GetString() ?? "" : "";
            if (!ManifestTypes.Contains(type)) type = doc.RootElement.TryGetProperty("manifests", out _) ? MediaTypes.OciIndex : MediaTypes.OciManifest;
        }
        return (bytes, type, digest);
    }

    /// <summary>
    /// One blob into the store through ROOT/downloads/HEX.partial: an interrupted transfer
    /// (in this run or an earlier one) is resumed with "Range: bytes=N-"; the whole file is
    /// hashed before it is adopted; a bad one is deleted and the pull fails.
    /// </summary>
    private async Task DownloadBlobAsync(ImageReference r, Descriptor d, ImageStore store, string scope, Action<string>? progress, CancellationToken cancel)
    {
        Digest digest = Digest.Parse(d.Digest!, $"{r}: blob digest");
        if (store.Blobs.Has(digest)) return;
        string partial = store.PartialDownload(digest);
        Exception? last = null;
        for (int attempt = 1; attempt <= _options.Attempts; attempt++)
        {
            long have = File.Exists(partial) ? new FileInfo(partial).Length : 0;
            if (have > d.Size) { File.Delete(partial); have = 0; }
            if (have == d.Size && d.Size > 0) break;
            try
            {
                using HttpResponseMessage response = await SendAsync(r, scope, () =>
                {
                    var request = new HttpRequestMessage(HttpMethod.Get, $"{Base(r)}/blobs/{digest}");
                    if (have > 0) request.Headers.Range = new RangeHeaderValue(have, null);
                    return request;
                }, cancel, HttpCompletionOption.ResponseHeadersRead);
                if (response.StatusCode == HttpStatusCode.RequestedRangeNotSatisfiable) { File.Delete(partial); continue; }
                await EnsureSuccess(response, $"{r.Registry}/{r.Repository}: blob {digest}");
                bool resumed = response.StatusCode == HttpStatusCode.PartialContent;
                if (have > 0 && resumed) progress?.Invoke($"{digest.Hex[..12]}: resuming at {have} of {d.Size} bytes");
                using (var file = new FileStream(partial, resumed ? FileMode.Append : FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16))
                await using (Stream body = await response.Content.ReadAsStreamAsync(cancel))
                {
                    byte[] buffer = new byte[1 << 16];
                    int n;
                    // HttpClient's timeout ends with the headers; a body that stalls is cut
                    // after IdleTimeout without a byte (and resumed on the next attempt).
                    while ((n = await ReadWithIdleTimeout(body, buffer, cancel)) > 0)
                    {
                        if (file.Length + n > d.Size) throw new ImageException($"{r}: blob {digest} is longer than the announced {d.Size} bytes");
                        await file.WriteAsync(buffer.AsMemory(0, n), cancel);
                    }
                    file.Flush(flushToDisk: true);
                }
                if (new FileInfo(partial).Length == d.Size) { last = null; break; }
                last = new IOException($"blob {digest}: the transfer ended early");
            }
            catch (Exception e) when (e is HttpRequestException or IOException && e is not ImageException && !cancel.IsCancellationRequested)
            {
                last = e; // resumed on the next attempt from what is on disk
                progress?.Invoke($"{digest.Hex[..12]}: interrupted ({e.Message}); attempt {attempt + 1} of {_options.Attempts}");
                await Task.Delay(TimeSpan.FromMilliseconds(200 * attempt), cancel);
            }
        }
        if (last is not null) throw new ImageException($"{r}: blob {digest}: {last.Message}", last);
        store.Blobs.Adopt(partial, digest, d.Size, $"{r}: blob {digest}");
        progress?.Invoke($"{digest.Hex[..12]}: {d.Size} bytes, verified");
    }

    private async Task<int> ReadWithIdleTimeout(Stream body, byte[] buffer, CancellationToken cancel)
    {
        using var idle = CancellationTokenSource.CreateLinkedTokenSource(cancel);
        idle.CancelAfter(_options.IdleTimeout);
        try
        {
            return await body.ReadAsync(buffer, idle.Token);
        }
        catch (OperationCanceledException) when (!cancel.IsCancellationRequested)
        {
            throw new IOException($"no data for {_options.IdleTimeout.TotalSeconds:F0} s");
        }
    }

    /// <summary>
    /// Sends, and on a 401 authenticates as the registry asks (WWW-Authenticate: Bearer with
    /// realm/service/scope → a token from the realm, with credentials if configured; or Basic)
    /// and sends once more. Tokens are kept per registry and scope.
    /// </summary>
    private async Task<HttpResponseMessage> SendAsync(ImageReference r, string scope, Func<HttpRequestMessage> make, CancellationToken cancel,
        HttpCompletionOption completion = HttpCompletionOption.ResponseContentRead)
    {
        string key = $"{r.Registry} {scope}";
        HttpRequestMessage request = make();
        if (_auth.TryGetValue(key, out var header)) request.Headers.Authorization = header;
        HttpResponseMessage response;
        try
        {
            response = await _http.SendAsync(request, completion, cancel);
        }
        catch (HttpRequestException e)
        {
            throw new HttpRequestException($"{r.Registry}: {e.Message}", e);
        }
        if (response.StatusCode != HttpStatusCode.Unauthorized) return response;
        AuthenticationHeaderValue? challenge = response.Headers.WwwAuthenticate.FirstOrDefault();
        response.Dispose();
        if (challenge is null) throw new ImageException($"{r.Registry}: 401 Unauthorized without a WWW-Authenticate challenge");
        _auth[key] = await AuthenticateAsync(r, challenge, scope, cancel);
        request = make();
        request.Headers.Authorization = _auth[key];
        response = await _http.SendAsync(request, completion, cancel);
        if (response.StatusCode == HttpStatusCode.Unauthorized)
        {
            response.Dispose();
            throw new ImageException($"{r.Registry}: access to {r.Repository} denied{(_options.Credentials.ContainsKey(r.Registry) ? " with the configured credentials" : " (no credentials configured for this registry)")}");
        }
        return response;
    }

    private async Task<AuthenticationHeaderValue> AuthenticateAsync(ImageReference r, AuthenticationHeaderValue challenge, string scope, CancellationToken cancel)
    {
        _options.Credentials.TryGetValue(r.Registry, out var credentials);
        AuthenticationHeaderValue? basic = credentials.User is null ? null
            : new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes($"{credentials.User}:{credentials.Password}")));
        if (challenge.Scheme.Equals("Basic", StringComparison.OrdinalIgnoreCase))
        {
            return basic ?? throw new ImageException($"{r.Registry}: asks for a user and password (basic auth); none configured");
        }
        if (!challenge.Scheme.Equals("Bearer", StringComparison.OrdinalIgnoreCase))
        {
            throw new ImageException($"{r.Registry}: authentication scheme '{challenge.Scheme}' is not supported (Bearer and Basic are)");
        }
        var parameters = ParseChallenge(challenge.Parameter ?? "");
        if (!parameters.TryGetValue("realm", out string? realm) || !Uri.TryCreate(realm, UriKind.Absolute, out Uri? realmUri))
        {
            throw new ImageException($"{r.Registry}: Bearer challenge without a usable realm: {challenge.Parameter}");
        }
        var query = new List<string>();
        if (parameters.TryGetValue("service", out string? service)) query.Add("service=" + Uri.EscapeDataString(service));
        query.Add("scope=" + Uri.EscapeDataString(parameters.GetValueOrDefault("scope") ?? scope));
        using var request = new HttpRequestMessage(HttpMethod.Get, realmUri + (realmUri.Query.Length > 0 ? "&" : "?") + string.Join('&', query));
        if (basic is not null) request.Headers.Authorization = basic;
        using HttpResponseMessage response = await _http.SendAsync(request, cancel);
        await EnsureSuccess(response, $"{r.Registry}: token from {realmUri.GetLeftPart(UriPartial.Path)}");
        TokenResponse? token = JsonSerializer.Deserialize(await response.Content.ReadAsByteArrayAsync(cancel), RegistryJson.Default.TokenResponse);
        string value = token?.Token ?? token?.AccessToken ?? throw new ImageException($"{r.Registry}: the token service answered without a token");
        return new AuthenticationHeaderValue("Bearer", value);
    }

    /// <summary>key="value" pairs of a challenge, commas inside quotes kept.</summary>
    internal static Dictionary<string, string> ParseChallenge(string text)
    {
        var result = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        int i = 0;
        while (i < text.Length)
        {
            while (i < text.Length && (text[i] == ',' || text[i] == ' ')) i++;
            int eq = text.IndexOf('=', i);
            if (eq < 0) break;
            string key = text[i..eq].Trim();
            i = eq + 1;
            string value;
            if (i < text.Length && text[i] == '"')
            {
                int end = text.IndexOf('"', i + 1);
                if (end < 0) end = text.Length;
                value = text[(i + 1)..end];
                i = end + 1;
            }
            else
            {
                int end = text.IndexOf(',', i);
                if (end < 0) end = text.Length;
                value = text[i..end].Trim();
                i = end;
            }
            result[key] = value;
        }
        return result;
    }

    private static async Task EnsureSuccess(HttpResponseMessage response, string what)
    {
        if (response.IsSuccessStatusCode) return;
        string body = "";
        try { body = (await response.Content.ReadAsStringAsync()).Trim(); } catch (HttpRequestException) { }
        if (body.Length > 300) body = body[..300];
        throw new ImageException($"{what}: {(int)response.StatusCode} {response.ReasonPhrase}{(body.Length > 0 ? ": " + body : "")}");
    }

    /// <summary>
    /// Pushes an image of the store to REFERENCE: each blob (config, layers) unless the
    /// registry has it, uploaded whole (POST then PUT ?digest=), then the manifest by tag.
    /// </summary>
    public async Task PushAsync(ImageStore store, string image, string reference, CancellationToken cancel = default)
    {
        ImageReference r = ImageReference.Parse(reference);
        string scope = $"repository:{r.Repository}:pull,push";
        StoredImage stored = store.Find(image);
        var digests = new List<string> { stored.Config };
        digests.AddRange(stored.Layers.Select(l => l.Digest));
        foreach (string d in digests.Distinct())
        {
            Digest digest = Digest.Parse(d, "blob");
            using (HttpResponseMessage head = await SendAsync(r, scope, () => new HttpRequestMessage(HttpMethod.Head, $"{Base(r)}/blobs/{digest}"), cancel))
            {
                if (head.IsSuccessStatusCode) continue;
            }
            using HttpResponseMessage start = await SendAsync(r, scope, () => new HttpRequestMessage(HttpMethod.Post, $"{Base(r)}/blobs/uploads/"), cancel);
            await EnsureSuccess(start, $"{r}: starting the upload of {digest}");
            Uri location = start.Headers.Location ?? throw new ImageException($"{r}: upload without a Location");
            if (!location.IsAbsoluteUri) location = new Uri(new Uri(Base(r)), location);
            string put = location + (location.Query.Length > 0 ? "&" : "?") + "digest=" + Uri.EscapeDataString(digest.ToString());
            using HttpResponseMessage done = await SendAsync(r, scope, () =>
            {
                var request = new HttpRequestMessage(HttpMethod.Put, put) { Content = new StreamContent(store.Blobs.Open(digest)) };
                request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
                return request;
            }, cancel);
            await EnsureSuccess(done, $"{r}: uploading {digest}");
        }
        byte[] manifest = store.Blobs.ReadAll(Digest.Parse(stored.Manifest, "manifest"), 4 << 20);
        string mediaType = JsonSerializer.Deserialize(manifest, ImageJson.Default.ImageManifest)?.MediaType ?? MediaTypes.OciManifest;
        using HttpResponseMessage response = await SendAsync(r, scope, () =>
        {
            var request = new HttpRequestMessage(HttpMethod.Put, $"{Base(r)}/manifests/{r.Reference}") { Content = new ByteArrayContent(manifest) };
            request.Content.Headers.ContentType = new MediaTypeHeaderValue(mediaType);
            return request;
        }, cancel);
        await EnsureSuccess(response, $"{r}: putting the manifest");
    }

    /// <summary>The manifest and index already fetched (and verified) for this pull.</summary>
    private sealed class Documents(ConcurrentDictionary<string, byte[]> documents, ImageReference r) : IBlobSource
    {
        public Stream Open(Descriptor d) =>
            documents.TryGetValue(d.Digest!, out byte[]? bytes) ? new MemoryStream(bytes) : throw new ImageException($"{r}: blob {d.Digest} was not fetched");
    }
}

public sealed class TokenResponse
{
    [JsonPropertyName("token")] public string? Token { get; set; }
    [JsonPropertyName("access_token")] public string? AccessToken { get; set; }
    [JsonPropertyName("expires_in")] public int? ExpiresIn { get; set; }
}

[JsonSerializable(typeof(TokenResponse))]
internal sealed partial class RegistryJson : JsonSerializerContext;
