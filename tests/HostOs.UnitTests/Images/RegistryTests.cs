using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using HostOs.Images;

namespace HostOs.UnitTests.Images;

public class ImageReferenceTests
{
    [Theory]
    [InlineData("busybox", "docker.io", "library/busybox", "latest", null)]
    [InlineData("127.0.0.1:5000/demo/app:1.2", "127.0.0.1:5000", "demo/app", "1.2", null)]
    [InlineData("localhost/app", "localhost", "app", "latest", null)]
    [InlineData("ghcr.io/org/tool@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "ghcr.io", "org/tool", null, "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")]
    public void ReferencesParseAsDockerDoes(string text, string registry, string repository, string? tag, string? digest) =>
        Assert.Equal(new ImageReference(registry, repository, tag, digest), ImageReference.Parse(text));

    [Theory]
    [InlineData("UPPER/case")]
    [InlineData("app:bad tag")]
    [InlineData("app@sha256:short")]
    [InlineData("reg.io/../etc")]
    public void BadReferencesAreNamed(string text) =>
        Assert.Contains($"'{text}'", Assert.Throws<ImageException>(() => ImageReference.Parse(text)).Message);

    [Fact]
    public void ChallengesParseWithQuotedCommas() =>
        Assert.Equal("repository:a:pull,push", RegistryClient.ParseChallenge("realm=\"https://auth/token\",service=\"reg\",scope=\"repository:a:pull,push\"")["scope"]);
}

/// <summary>
/// Pulls (and pushes) against a real docker-registry on 127.0.0.1: images the tests build
/// themselves; by tag, by digest and through a multi-arch index; over HTTP and HTTPS; with
/// basic and token auth; resumed after an interrupted download; refused when tampered with.
/// </summary>
public sealed class RegistryTests : IDisposable
{
    private readonly string _work = Directory.CreateTempSubdirectory("registry-test-").FullName;

    public void Dispose() => Directory.Delete(_work, recursive: true);

    private ImageStore NewStore(string name) => new(Path.Combine(_work, name));

    /// <summary>A store holding demo:1 (base + top layer, from a test-built OCI layout).</summary>
    private ImageStore Source(byte[][]? layers = null)
    {
        string layout = Path.Combine(_work, "layout-" + Guid.NewGuid().ToString("N")[..8]);
        ImageStoreTests.MakeLayout(layout, "demo:1", layers ?? [ImageStoreTests.BaseLayer, ImageStoreTests.TopLayer]);
        ImageStore store = NewStore("source-" + Path.GetFileName(layout));
        ImageImport.FromOciLayout(store, layout);
        return store;
    }

    private static RegistryOptions Plain(Registry r) => new() { Insecure = [r.Host] };

    [RootFact]
    public async Task PushThenPullByTagAndByDigest()
    {
        using var registry = new Registry();
        ImageStore source = Source();
        StoredImage demo = source.Find("demo:1");
        using var client = new RegistryClient(Plain(registry));
        await client.PushAsync(source, "demo:1", $"{registry.Host}/demo/app:1");

        ImageStore target = NewStore("target");
        StoredImage pulled = await client.PullAsync($"{registry.Host}/demo/app:1", target);
        Assert.Equal(($"{registry.Host}/demo/app:1", demo.Manifest), (pulled.Name, pulled.Manifest));
        Assert.True(File.Exists(Path.Combine(target.LayerPath(Digest.Of(ImageStoreTests.TopLayer)), "var/cache/new")));

        StoredImage byDigest = await client.PullAsync($"{registry.Host}/demo/app@{demo.Manifest}", target);
        Assert.Equal(demo.Manifest, byDigest.Manifest);
        var e = await Assert.ThrowsAsync<ImageException>(() => client.PullAsync($"{registry.Host}/demo/app:missing", NewStore("t2")));
        Assert.Contains("404", e.Message);
    }

    [RootFact]
    public async Task AMultiArchIndexYieldsTheAmd64Image()
    {
        using var registry = new Registry();
        ImageStore source = Source();
        StoredImage demo = source.Find("demo:1");
        using var client = new RegistryClient(Plain(registry));
        await client.PushAsync(source, "demo:1", $"{registry.Host}/multi:amd64");
        // An arm64 decoy (its own config) and an index over both, put by hand.
        using var http = new HttpClient();
        string repo = $"http://{registry.Host}/v2/multi";
        byte[] decoyConfig = "{\"architecture\":\"arm64\",\"os\":\"linux\",\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]}}"u8.ToArray();
        await Upload(http, repo, decoyConfig);
        byte[] decoy = Encoding.UTF8.GetBytes($"{{\"schemaVersion\":2,\"mediaType\":\"{MediaTypes.OciManifest}\",\"config\":{{\"mediaType\":\"{MediaTypes.OciConfig}\",\"digest\":\"{Digest.Of(decoyConfig)}\",\"size\":{decoyConfig.Length}}},\"layers\":[]}}");
        await PutManifest(http, repo, "arm64", decoy, MediaTypes.OciManifest);
        long amd64Size = source.Blobs.ReadAll(Digest.Parse(demo.Manifest, "m"), 1 << 20).Length;
        byte[] index = Encoding.UTF8.GetBytes($"{{\"schemaVersion\":2,\"mediaType\":\"{MediaTypes.OciIndex}\",\"manifests\":[" +
            $"{{\"mediaType\":\"{MediaTypes.OciManifest}\",\"digest\":\"{Digest.Of(decoy)}\",\"size\":{decoy.Length},\"platform\":{{\"architecture\":\"arm64\",\"os\":\"linux\"}}}}," +
            $"{{\"mediaType\":\"{MediaTypes.OciManifest}\",\"digest\":\"{demo.Manifest}\",\"size\":{amd64Size},\"platform\":{{\"architecture\":\"amd64\",\"os\":\"linux\"}}}}]}}");
        await PutManifest(http, repo, "latest", index, MediaTypes.OciIndex);

        StoredImage pulled = await client.PullAsync($"{registry.Host}/multi", NewStore("target"));
        Assert.Equal(demo.Manifest, pulled.Manifest);
    }

    [RootFact]
    public async Task ATamperedLayerInTheRegistryIsRefusedAndNothingIsKept()
    {
        using var registry = new Registry();
        ImageStore source = Source();
        using var client = new RegistryClient(Plain(registry));
        await client.PushAsync(source, "demo:1", $"{registry.Host}/demo:1");
        string top = Digest.Of(ImageStoreTests.TopLayer).ToString();
        byte[] data = File.ReadAllBytes(registry.BlobData(top));
        data[600] ^= 0x20;
        File.WriteAllBytes(registry.BlobData(top), data);

        ImageStore target = NewStore("target");
        var e = await Assert.ThrowsAsync<ImageException>(() => client.PullAsync($"{registry.Host}/demo:1", target));
        Assert.Contains($"not the announced {top}", e.Message);
        Assert.Empty(target.Images());
        Assert.False(target.Blobs.Has(Digest.Parse(top, "t")));
        Assert.False(File.Exists(target.PartialDownload(Digest.Parse(top, "t"))));
    }

    [RootFact]
    public async Task BasicAuthAndHttps()
    {
        var (cert, key) = Registry.SelfSigned(_work, "registry");
        string htpasswd = Path.Combine(_work, "htpasswd");
        File.WriteAllText(htpasswd, Registry.Run("htpasswd", "-Bbn", "alice", "s3cret"));
        using var registry = new Registry($"  htpasswd:\n    realm: test\n    path: {htpasswd}\n", (cert, key));
        ImageStore source = Source();
        var options = new RegistryOptions { CaCertificates = cert, Credentials = { [registry.Host] = ("alice", "s3cret") } };
        using (var client = new RegistryClient(options))
        {
            await client.PushAsync(source, "demo:1", $"{registry.Host}/private:1");
            Assert.Equal(source.Find("demo:1").Manifest, (await client.PullAsync($"{registry.Host}/private:1", NewStore("target"))).Manifest);
        }
        using (var anonymous = new RegistryClient(new RegistryOptions { CaCertificates = cert }))
        {
            var e = await Assert.ThrowsAsync<ImageException>(() => anonymous.PullAsync($"{registry.Host}/private:1", NewStore("t2")));
            Assert.Contains("basic auth", e.Message);
        }
        using (var untrusting = new RegistryClient(new RegistryOptions { Credentials = { [registry.Host] = ("alice", "s3cret") }, Attempts = 1 }))
        {
            var e = await Assert.ThrowsAnyAsync<Exception>(() => untrusting.PullAsync($"{registry.Host}/private:1", NewStore("t3")));
            Assert.Contains("SSL", e.ToString(), StringComparison.OrdinalIgnoreCase);
        }
    }

    [RootFact]
    public async Task BearerTokenAuth()
    {
        var (cert, key) = Registry.SelfSigned(_work, "token-signer");
        using var tokens = new TokenServer(key, cert, "alice", "s3cret");
        using var registry = new Registry($"  token:\n    realm: {tokens.Url}\n    service: test-registry\n    issuer: test-issuer\n    rootcertbundle: {cert}\n");
        ImageStore source = Source();
        var options = new RegistryOptions { Insecure = [registry.Host], Credentials = { [registry.Host] = ("alice", "s3cret") } };
        using var client = new RegistryClient(options);
        await client.PushAsync(source, "demo:1", $"{registry.Host}/tokened:1");
        StoredImage pulled = await client.PullAsync($"{registry.Host}/tokened:1", NewStore("target"));
        Assert.Equal(source.Find("demo:1").Manifest, pulled.Manifest);
        Assert.Contains(tokens.Scopes, s => s == "repository:tokened:pull");
        using var wrong = new RegistryClient(new RegistryOptions { Insecure = [registry.Host], Credentials = { [registry.Host] = ("alice", "wrong") } });
        var e = await Assert.ThrowsAsync<ImageException>(() => wrong.PullAsync($"{registry.Host}/tokened:1", NewStore("t2")));
        Assert.Contains("401", e.Message);
    }

    [RootFact]
    public async Task AnInterruptedDownloadResumesWithARangeAndLayersComeInParallel()
    {
        using var registry = new Registry();
        // Three layers, so parallel downloads can be seen; the big one gets cut.
        byte[] big = new TestTar().Entry("big.bin", '0', RandomNumberGenerator.GetBytes(300_000)).Build();
        ImageStore source = Source([ImageStoreTests.BaseLayer, ImageStoreTests.TopLayer, big]);
        using (var pusher = new RegistryClient(Plain(registry))) await pusher.PushAsync(source, "demo:1", $"{registry.Host}/big:1");

        var handler = new FlakyHandler(cutBlob: Digest.Of(big).ToString(), afterBytes: 100_000);
        using var client = new RegistryClient(Plain(registry), handler);
        var log = new List<string>();
        ImageStore target = NewStore("target");
        StoredImage pulled = await client.PullAsync($"{registry.Host}/big:1", target, m => { lock (log) log.Add(m); });
        Assert.Equal(3, pulled.Layers.Count);
        Assert.Contains("bytes=100000-", handler.Ranges);
        Assert.Contains(log, m => m.Contains("resuming at 100000"));
        Assert.True(handler.MaxConcurrent >= 2, $"at most {handler.MaxConcurrent} blob downloads ran at once");

        // A partial file left by an earlier (crashed) pull is resumed, not restarted.
        ImageStore again = NewStore("again");
        Digest bigDigest = Digest.Of(big);
        File.WriteAllBytes(again.PartialDownload(bigDigest), big[..50_000]);
        var counting = new FlakyHandler(cutBlob: null, afterBytes: 0);
        using (var c2 = new RegistryClient(Plain(registry), counting)) await c2.PullAsync($"{registry.Host}/big:1", again);
        Assert.Contains("bytes=50000-", counting.Ranges);

        // A partial file with wrong bytes cannot become the blob: refused, deleted, and a retry succeeds.
        ImageStore third = NewStore("third");
        byte[] wrong = (byte[])big[..50_000].Clone();
        wrong[10] ^= 1;
        File.WriteAllBytes(third.PartialDownload(bigDigest), wrong);
        using var c3 = new RegistryClient(Plain(registry));
        var e = await Assert.ThrowsAsync<ImageException>(() => c3.PullAsync($"{registry.Host}/big:1", third));
        Assert.Contains("not the announced", e.Message);
        Assert.False(File.Exists(third.PartialDownload(bigDigest)));
        Assert.Equal(pulled.Manifest, (await c3.PullAsync($"{registry.Host}/big:1", third)).Manifest);
    }

    private static async Task Upload(HttpClient http, string repo, byte[] blob)
    {
        using var start = await http.PostAsync($"{repo}/blobs/uploads/", null);
        start.EnsureSuccessStatusCode();
        Uri location = start.Headers.Location!.IsAbsoluteUri ? start.Headers.Location : new Uri(new Uri(repo), start.Headers.Location);
        using var put = await http.PutAsync(location + (location.Query.Length > 0 ? "&" : "?") + "digest=" + Digest.Of(blob), new ByteArrayContent(blob));
        put.EnsureSuccessStatusCode();
    }

    private static async Task PutManifest(HttpClient http, string repo, string reference, byte[] manifest, string mediaType)
    {
        var content = new ByteArrayContent(manifest);
        content.Headers.ContentType = new MediaTypeHeaderValue(mediaType);
        using var put = await http.PutAsync($"{repo}/manifests/{reference}", content);
        Assert.True(put.IsSuccessStatusCode, await put.Content.ReadAsStringAsync());
    }

    /// <summary>
    /// Passes requests to the network, records Range headers and how many blob downloads
    /// run at once (each held 300 ms), and cuts the first download of one blob short.
    /// </summary>
    private sealed class FlakyHandler(string? cutBlob, int afterBytes) : DelegatingHandler(new SocketsHttpHandler())
    {
        private int _running, _cut;
        public int MaxConcurrent;
        public List<string> Ranges { get; } = [];

        protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancel)
        {
            bool blob = request.RequestUri!.AbsolutePath.Contains("/blobs/sha256:");
            if (request.Headers.Range is { } range) lock (Ranges) Ranges.Add(range.ToString());
            if (!blob) return await base.SendAsync(request, cancel);
            int now = Interlocked.Increment(ref _running);
            lock (Ranges) MaxConcurrent = Math.Max(MaxConcurrent, now);
            try
            {
                await Task.Delay(300, cancel);
                HttpResponseMessage response = await base.SendAsync(request, cancel);
                if (cutBlob is not null && request.RequestUri.AbsolutePath.EndsWith(cutBlob) && Interlocked.Exchange(ref _cut, 1) == 0)
                {
                    byte[] all = await response.Content.ReadAsByteArrayAsync(cancel);
                    var cut = new HttpResponseMessage(response.StatusCode) { Content = new StreamContent(new BrokenStream(all[..afterBytes])) };
                    return cut;
                }
                return response;
            }
            finally
            {
                Interlocked.Decrement(ref _running);
            }
        }
    }

    /// <summary>Gives its bytes, then fails as a dropped connection does.</summary>
    private sealed class BrokenStream(byte[] data) : MemoryStream(data)
    {
        public override int Read(byte[] buffer, int offset, int count)
        {
            int n = base.Read(buffer, offset, count);
            return n > 0 ? n : throw new IOException("connection reset (test)");
        }

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) => Task.FromResult(Read(buffer, offset, count));

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            byte[] temp = new byte[buffer.Length];
            int n = Read(temp, 0, temp.Length);
            temp.AsSpan(0, n).CopyTo(buffer.Span);
            return ValueTask.FromResult(n);
        }
    }

    /// <summary>
    /// A token service as the registry's token auth expects: basic credentials in, a JWT
    /// (RS256, the signing certificate in x5c) granting the asked scope out.
    /// </summary>
    private sealed class TokenServer : IDisposable
    {
        private readonly HttpListener _listener = new();
        private readonly RSA _key = RSA.Create();
        private readonly string _certificate;
        public string Url { get; }
        public List<string> Scopes { get; } = [];

        public TokenServer(string keyPem, string certPem, string user, string password)
        {
            _key.ImportFromPem(File.ReadAllText(keyPem));
            _certificate = Convert.ToBase64String(System.Security.Cryptography.X509Certificates.X509Certificate2.CreateFromPem(File.ReadAllText(certPem)).RawData);
            Url = $"http://127.0.0.1:{Registry.FreePort()}/token/";
            _listener.Prefixes.Add(Url);
            _listener.Start();
            _ = Task.Run(async () =>
            {
                while (_listener.IsListening)
                {
                    HttpListenerContext context;
                    try { context = await _listener.GetContextAsync(); } catch (Exception) { return; }
                    string? auth = context.Request.Headers["Authorization"];
                    string expected = "Basic " + Convert.ToBase64String(Encoding.UTF8.GetBytes($"{user}:{password}"));
                    string scope = context.Request.QueryString["scope"] ?? "";
                    lock (Scopes) Scopes.Add(scope);
                    if (auth != expected) { context.Response.StatusCode = 401; context.Response.Close(); continue; }
                    byte[] body = Encoding.UTF8.GetBytes($"{{\"token\":\"{Jwt(user, scope)}\"}}");
                    context.Response.ContentType = "application/json";
                    context.Response.OutputStream.Write(body);
                    context.Response.Close();
                }
            });
        }

        private string Jwt(string user, string scope)
        {
            static string B64(string s) => Convert.ToBase64String(Encoding.UTF8.GetBytes(s)).TrimEnd('=').Replace('+', '-').Replace('/', '_');
            string[] parts = scope.Split(':');
            string actions = parts.Length == 3 ? string.Join(',', parts[2].Split(',').Select(a => $"\"{a}\"")) : "";
            long now = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
            string header = B64($"{{\"alg\":\"RS256\",\"typ\":\"JWT\",\"x5c\":[\"{_certificate}\"]}}");
            string claims = B64($"{{\"iss\":\"test-issuer\",\"sub\":\"{user}\",\"aud\":\"test-registry\",\"exp\":{now + 300},\"nbf\":{now - 60},\"iat\":{now}," +
                                $"\"jti\":\"{Guid.NewGuid():N}\",\"access\":[{{\"type\":\"repository\",\"name\":\"{(parts.Length == 3 ? parts[1] : "")}\",\"actions\":[{actions}]}}]}}");
            byte[] signature = _key.SignData(Encoding.ASCII.GetBytes(header + "." + claims), HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
            return header + "." + claims + "." + Convert.ToBase64String(signature).TrimEnd('=').Replace('+', '-').Replace('/', '_');
        }

        public void Dispose()
        {
            _listener.Stop();
            _key.Dispose();
        }
    }
}
