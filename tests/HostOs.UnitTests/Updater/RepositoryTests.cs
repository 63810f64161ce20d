using System.Net;
using System.Net.Sockets;
using System.Text;
using HostOs.Platform.Boot;
using HostOs.UnitTests.Images;
using HostOs.Updater.Machine;
using HostOs.Updater.Payload;
using HostOs.Updater.Repository;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.FileProviders;
using Microsoft.Extensions.Logging;
using NSec.Cryptography;

namespace HostOs.UnitTests.Updater;

/// <summary>
/// The update repository (issue 5): a signed, expiring index per channel; payloads served
/// by a real HTTP server (Kestrel's static files, with ranges) and streamed into the
/// applier; a cut download resumed with a range request; every refusal named.
/// </summary>
public sealed class RepositoryTests : IDisposable
{
    private readonly string _work = Directory.CreateTempSubdirectory("repo-test-").FullName;
    private static readonly DateTimeOffset Now = new(2026, 11, 29, 12, 0, 0, TimeSpan.Zero);

    public void Dispose() => Directory.Delete(_work, recursive: true);

    private (Key Key, PublicKey Public) NewKey(string name)
    {
        var (priv, pub) = UpdateKeys.Generate(Path.Combine(_work, "keys"), name);
        return (UpdateKeys.LoadPrivate(priv), UpdateKeys.ParsePublic(File.ReadAllText(pub), pub));
    }

    private string Build(string version, byte[] root) => PayloadTests.WriteBuild(_work, version, root, "kernel", "initrd " + version);

    private static byte[] Root(int seed, int blocks = 64)
    {
        var b = new byte[blocks * 4096];
        new Random(seed).NextBytes(b.AsSpan(0, b.Length / 2));
        return b;
    }

    /// <summary>A repository with 1.0.0 full, 1.1.0 full and a 1.0.0 -> 1.1.0 delta, published for "stable".</summary>
    private (string Repo, string B1, string B2, Key Key, PublicKey Public) Repository()
    {
        var (key, pub) = NewKey("k");
        byte[] v1 = Root(1), v2 = (byte[])v1.Clone();
        v2[1000] ^= 0xff;
        string b1 = Build("1.0.0", v1), b2 = Build("1.1.0", v2);
        string repo = Directory.CreateDirectory(Path.Combine(_work, "repo", "payloads")).Parent!.FullName;
        var builder = new PayloadBuilder(3);
        builder.Create(ImageBuild.FromDirectory(b1), null, [key], Path.Combine(repo, "payloads", "1.0.0-full.hup"));
        builder.Create(ImageBuild.FromDirectory(b2), null, [key], Path.Combine(repo, "payloads", "1.1.0-full.hup"));
        builder.Create(ImageBuild.FromDirectory(b2), ImageBuild.FromDirectory(b1), [key], Path.Combine(repo, "payloads", "1.0.0-1.1.0.hup"));
        UpdateIndex.Publish(repo, "stable", [key], TimeSpan.FromDays(7), Now);
        return (repo, b1, b2, key, pub);
    }

    private static (byte[] Index, byte[] Sig) Files(string repo) =>
        (File.ReadAllBytes(Path.Combine(repo, "stable", "index.json")), File.ReadAllBytes(Path.Combine(repo, "stable", "index.json.sig")));

    [Fact]
    public void TheIndexChoosesADeltaFromTheRunningVersion_ElseTheFullPayload()
    {
        var (repo, _, _, _, pub) = Repository();
        var (index, sig) = Files(repo);
        UpdateIndex i = UpdateIndex.Verify(index, sig, [pub], "stable", Now);
        Assert.Equal(["1.0.0", "1.1.0"], i.Releases.Select(r => r.Version));
        Assert.Equal(("1.1.0", "payloads/1.0.0-1.1.0.hup"), (i.Choose("1.0.0")!.Value.Release.Version, i.Choose("1.0.0")!.Value.Payload.Path));
        Assert.Equal("payloads/1.1.0-full.hup", i.Choose("0.9.0")!.Value.Payload.Path);
        Assert.Null(i.Choose("1.1.0"));
    }

    [Fact]
    public void ExpiredAlteredForeignAndUnknownIndexesAreRefusedByName()
    {
        var (repo, _, _, _, pub) = Repository();
        var (_, stranger) = NewKey("stranger");
        var (index, sig) = Files(repo);
        Assert.Contains("expired at 2026-12-06", Assert.Throws<PayloadException>(() => UpdateIndex.Verify(index, sig, [pub], "stable", Now.AddDays(8))).Message);
        Assert.Contains("stale or frozen mirror", Assert.Throws<PayloadException>(() => UpdateIndex.Verify(index, sig, [pub], "stable", Now.AddDays(8))).Message);
        byte[] altered = Encoding.UTF8.GetBytes(Encoding.UTF8.GetString(index).Replace("1.1.0", "1.9.0"));
        Assert.Contains("the index was altered", Assert.Throws<PayloadException>(() => UpdateIndex.Verify(altered, sig, [pub], "stable", Now)).Message);
        Assert.Contains("is for channel 'stable', not 'beta'", Assert.Throws<PayloadException>(() => UpdateIndex.Verify(index, sig, [pub], "beta", Now)).Message);
        Assert.Contains("is signed only by unknown key", Assert.Throws<PayloadException>(() => UpdateIndex.Verify(index, sig, [stranger], "stable", Now)).Message);
    }

    /// <summary>Kestrel serving the repository's files (static files answer range requests).</summary>
    private static async Task<WebApplication> Serve(string root, int port)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls($"http://127.0.0.1:{port}");
        builder.Logging.ClearProviders();
        WebApplication app = builder.Build();
        app.UseStaticFiles(new StaticFileOptions
        {
            FileProvider = new PhysicalFileProvider(root),
            ServeUnknownFileTypes = true,
        });
        await app.StartAsync();
        return app;
    }

    [Fact]
    public async Task InstallStreamsADeltaFromARealHttpServer()
    {
        var (repo, b1, b2, _, pub) = Repository();
        int port = Registry.FreePort();
        await using WebApplication server = await Serve(repo, port);
        using var http = new HttpClient();
        var client = new UpdateClient(http, new Uri($"http://127.0.0.1:{port}/"), [pub]);
        // Not "now": the index's own clock, so that the test's date does not expire it.
        UpdateIndex index = client.FetchIndex("stable", Now);
        var (release, payload) = index.Choose("1.0.0")!.Value;
        Assert.NotNull(payload.From);
        string target = Path.Combine(_work, "slot.img");
        await Task.Run(() =>
        {
            using Stream download = client.Open(payload);
            new PayloadApplier([pub]).Apply(download, new ApplyTarget(target, Path.Combine(b1, "root.img"), Path.Combine(_work, "boot"), b1), "1.0.0", false);
        });
        Assert.Equal("1.1.0", release.Version);
        Assert.Equal(File.ReadAllBytes(Path.Combine(b2, "root.img")), File.ReadAllBytes(target));
        Assert.Equal("initrd 1.1.0", File.ReadAllText(Path.Combine(_work, "boot", "initrd.img")));
    }

    /// <summary>Records the Range of every request it passes on.</summary>
    private sealed class RangeRecorder(List<long?> ranges) : DelegatingHandler(new HttpClientHandler())
    {
        protected override HttpResponseMessage Send(HttpRequestMessage request, CancellationToken cancel)
        {
            lock (ranges) ranges.Add(request.Headers.Range?.Ranges.Single().From);
            return base.Send(request, cancel);
        }
    }

    /// <summary>
    /// An install from the repository stopped after its first operation resumes: the second
    /// download reads the head, then asks for the rest with a range from where the first
    /// operation's data ends; the whole payload's hash is not checked then, the result is.
    /// </summary>
    [Fact]
    public async Task AResumedInstallAsksOnlyForTheDataItStillNeeds()
    {
        var (key, pub) = NewKey("k");
        byte[] image = new byte[2500 * 4096];
        new Random(5).NextBytes(image);
        string b1 = Build("1.0.0", image);
        string repo = Directory.CreateDirectory(Path.Combine(_work, "repo", "payloads")).Parent!.FullName;
        var built = new PayloadBuilder(1).Create(ImageBuild.FromDirectory(b1), null, [key], Path.Combine(repo, "payloads", "1.0.0-full.hup"));
        UpdateIndex.Publish(repo, "stable", [key], TimeSpan.FromDays(7), Now);
        int port = Registry.FreePort();
        await using WebApplication server = await Serve(repo, port);
        var ranges = new List<long?>();
        using var http = new HttpClient(new RangeRecorder(ranges));
        var client = new UpdateClient(http, new Uri($"http://127.0.0.1:{port}/"), [pub]);
        UpdateIndex.PayloadRef payload = client.FetchIndex("stable", Now).Choose("0.9.0")!.Value.Payload;
        string target = Path.Combine(_work, "slot.img");
        var said = new List<string>();
        void Install(CancellationToken cancel = default, Action<PayloadApplier.Progress>? progress = null)
        {
            using Stream download = client.Open(payload);
            new PayloadApplier([pub], said.Add).Apply(download, new ApplyTarget(target, null, Path.Combine(_work, "boot")), "0.9.0", false, progress, cancel);
        }

        await Task.Run(() =>
        {
            using var cts = new CancellationTokenSource();
            Assert.ThrowsAny<OperationCanceledException>(() => Install(cts.Token, p => { if (p.Done >= 1024 * 4096) cts.Cancel(); }));
            ranges.Clear();
            Install();
        });
        Assert.Equal(image, File.ReadAllBytes(target));
        Assert.Contains(said, l => l.StartsWith("resuming: the target already holds the verified output of operations 0..0 of 3", StringComparison.Ordinal));
        long head = new FileInfo(Path.Combine(repo, "payloads", "1.0.0-full.hup")).Length - built.Manifest.DataLength;
        Assert.Equal([null, head + built.Manifest.Operations[0].DataLength], ranges);

        // The same release truncated, named by hand (no index): the slot holds all three
        // operations' output, the data the skip would go on at is not there: refused by name.
        byte[] bytes = File.ReadAllBytes(Path.Combine(repo, "payloads", "1.0.0-full.hup"));
        File.WriteAllBytes(Path.Combine(repo, "payloads", "truncated.hup"), bytes[..(bytes.Length / 3)]);
        var e = await Task.Run(() =>
        {
            using var download = new ResumingDownload(http, new Uri($"http://127.0.0.1:{port}/payloads/truncated.hup"), null);
            return Assert.Throws<PayloadException>(() =>
                new PayloadApplier([pub]).Apply(download, new ApplyTarget(target, null, Path.Combine(_work, "boot")), "0.9.0", false));
        });
        Assert.Contains("(truncated)", e.Message);
    }

    [Fact]
    public async Task ARefusedDeltaFallsBackToTheFullPayload()
    {
        var (repo, b1, b2, key, pub) = Repository();
        // ReleaseSource judges expiry by the real clock.
        UpdateIndex.Publish(repo, "stable", [key], TimeSpan.FromDays(7), DateTimeOffset.UtcNow);
        // A machine that says it runs 1.0.0, but whose slot is not the bytes the delta was made from.
        string esp = Path.Combine(_work, "esp"), slotA = Path.Combine(_work, "a.img"), slotB = Path.Combine(_work, "b.img");
        byte[] drifted = File.ReadAllBytes(Path.Combine(b1, "root.img"));
        drifted[7] ^= 1;
        File.WriteAllBytes(slotA, drifted);
        File.WriteAllBytes(slotB, []);
        BootEntryFiles.Bless(esp, BootEntryFiles.Write(esp, "1.0.0", "hostos.slot=a hostos.version=1.0.0"));
        var machine = new SlotUpdater(new SlotLayout("a", "1.0.0", slotA, "b", slotB), esp, () => [pub], null, Path.Combine(_work, "records"));

        int port = Registry.FreePort();
        await using WebApplication server = await Serve(repo, port);
        using var http = new HttpClient();
        var said = new List<string>();
        var source = new ReleaseSource(http, [pub], $"http://127.0.0.1:{port}/", "stable", said.Add);
        var (release, payload) = source.Check("1.0.0")!.Value;
        Assert.Equal("1.0.0", payload.From);
        PayloadManifest m = await Task.Run(() => source.Install(machine, release, payload));
        Assert.False(m.IsDelta);
        Assert.Equal(File.ReadAllBytes(Path.Combine(b2, "root.img")), File.ReadAllBytes(slotB));
        Assert.Contains(said, l => l.Contains("the delta from 1.0.0 was refused (the source", StringComparison.Ordinal) && l.Contains("taking the full payload payloads/1.1.0-full.hup", StringComparison.Ordinal));
        Assert.Equal(["hostos-1.0.0.conf", "hostos-1.1.0+3.conf"], BootEntryFiles.List(esp).Select(e => e.Name.FileName).Order(StringComparer.Ordinal));
    }

    /// <summary>
    /// A deliberately bad HTTP server: cuts the first response after <paramref name="cutAfter"/>
    /// bytes; then answers ranges (<paramref name="mode"/> "ranges"), or carries another
    /// validator and the whole file ("changed": the file changed), or the whole file with
    /// the same validator ("no-ranges": a server that does not do ranges).
    /// </summary>
    private static async Task FlakyServer(TcpListener listener, byte[] file, int cutAfter, string mode, CancellationToken stop)
    {
        int requests = 0;
        while (!stop.IsCancellationRequested)
        {
            using TcpClient c = await listener.AcceptTcpClientAsync(stop);
            using NetworkStream s = c.GetStream();
            var head = new StringBuilder();
            var one = new byte[1];
            while (!head.ToString().EndsWith("\r\n\r\n", StringComparison.Ordinal) && await s.ReadAsync(one, stop) == 1) head.Append((char)one[0]);
            string text = head.ToString();
            long from = 0;
            int at = text.IndexOf("Range: bytes=", StringComparison.OrdinalIgnoreCase);
            if (at >= 0) from = long.Parse(text[(at + 13)..text.IndexOf('-', at + 13)], System.Globalization.CultureInfo.InvariantCulture);
            requests++;
            string etag = mode == "changed" && requests > 1 ? "\"v2\"" : "\"v1\"";
            bool ranged = from > 0 && mode == "ranges";
            if (!ranged) from = 0;
            string status = ranged ? "206 Partial Content" : "200 OK";
            string range = ranged ? $"Content-Range: bytes {from}-{file.Length - 1}/{file.Length}\r\n" : "";
            await s.WriteAsync(Encoding.ASCII.GetBytes($"HTTP/1.1 {status}\r\nContent-Length: {file.Length - from}\r\nETag: {etag}\r\n{range}Connection: close\r\n\r\n"), stop);
            int length = (int)(file.Length - from);
            if (requests == 1) length = Math.Min(length, cutAfter);
            await s.WriteAsync(file.AsMemory((int)from, length), stop);
        }
    }

    [Fact]
    public async Task ACutDownloadIsResumed_WithARangeOrByReadingPast_AndAChangedFileIsRefused()
    {
        var (repo, b1, b2, _, pub) = Repository();
        var (index, sig) = Files(repo);
        UpdateIndex.PayloadRef payload = UpdateIndex.Verify(index, sig, [pub], "stable", Now).Choose("0.1.0")!.Value.Payload;
        byte[] file = File.ReadAllBytes(Path.Combine(repo, payload.Path));
        using var http = new HttpClient();

        foreach (string mode in new[] { "ranges", "no-ranges", "changed" })
        {
            bool change = mode == "changed";
            var listener = new TcpListener(IPAddress.Loopback, 0);
            listener.Start();
            using var stop = new CancellationTokenSource();
            Task server = FlakyServer(listener, file, cutAfter: file.Length / 3, mode, stop.Token);
            var uri = new Uri($"http://127.0.0.1:{((IPEndPoint)listener.LocalEndpoint).Port}/{payload.Path}");
            string target = Path.Combine(_work, $"slot-{mode}.img");
            var said = new List<string>();
            try
            {
                await Task.Run(() =>
                {
                    using var download = new ResumingDownload(http, uri, payload, retryDelay: TimeSpan.FromMilliseconds(10), say: said.Add);
                    if (!change)
                    {
                        new PayloadApplier([pub]).Apply(download, new ApplyTarget(target, null, Path.Combine(_work, "boot")), null, false);
                        Assert.Equal(1, download.Resumptions);
                        Assert.Equal(File.ReadAllBytes(Path.Combine(b2, "root.img")), File.ReadAllBytes(target));
                        Assert.Equal(mode == "no-ranges", said.Any(l => l.Contains("the server does not answer range requests; read past", StringComparison.Ordinal)));
                    }
                    else
                    {
                        var e = Assert.Throws<PayloadException>(() =>
                            new PayloadApplier([pub]).Apply(download, new ApplyTarget(target, null, Path.Combine(_work, "boot")), null, false));
                        Assert.Contains("the payload changed on the server during the download", e.Message);
                    }
                });
            }
            finally
            {
                await stop.CancelAsync();
                listener.Stop();
                try { await server; } catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException) { }
            }
        }
    }

    /// <summary>
    /// A repository on local media (file:// or an absolute path): the same index and payloads
    /// as on a server, streamed into the applier; an interrupted install resumes by skipping
    /// what the slot verifiably holds.
    /// </summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void InstallFromARepositoryOnLocalMedia(bool fileUrl)
    {
        var (repo, b1, b2, key, pub) = Repository();
        var client = new UpdateClient(new HttpClient(), new Uri(fileUrl ? new Uri(repo).AbsoluteUri + "/" : repo + "/"), [pub]);
        var (release, payload) = client.FetchIndex("stable", Now).Choose("1.0.0")!.Value;
        Assert.Equal("1.0.0", payload.From);
        string target = Path.Combine(_work, "slot.img");
        var said = new List<string>();
        void Install(CancellationToken cancel = default, Action<PayloadApplier.Progress>? progress = null)
        {
            using Stream stream = client.Open(payload);
            Assert.IsType<LocalPayload>(stream);
            new PayloadApplier([pub], said.Add).Apply(stream, new ApplyTarget(target, Path.Combine(b1, "root.img"), Path.Combine(_work, "boot"), b1), "1.0.0", false, progress, cancel);
        }
        Install();
        Assert.Equal("1.1.0", release.Version);
        Assert.Equal(File.ReadAllBytes(Path.Combine(b2, "root.img")), File.ReadAllBytes(target));
        Assert.Equal("initrd 1.1.0", File.ReadAllText(Path.Combine(_work, "boot", "initrd.img")));

        // A release of three 4 MiB frames, cut after the first, then installed again: the
        // second skips the first frame's data (a seek), and the result is exact.
        byte[] image = new byte[2500 * 4096];
        new Random(5).NextBytes(image);
        string b3 = Build("2.0.0", image);
        new PayloadBuilder(1).Create(ImageBuild.FromDirectory(b3), null, [key], Path.Combine(repo, "payloads", "2.0.0-full.hup"));
        UpdateIndex.Publish(repo, "stable", [key], TimeSpan.FromDays(7), Now);
        (release, payload) = client.FetchIndex("stable", Now).Choose("1.1.0")!.Value;
        Assert.Equal("2.0.0", release.Version);
        using (var cts = new CancellationTokenSource())
        {
            Assert.ThrowsAny<OperationCanceledException>(() => Install(cts.Token, p => { if (p.Done >= 1024 * 4096) cts.Cancel(); }));
        }
        said.Clear();
        Install();
        Assert.Contains(said, l => l.StartsWith("resuming: the target already holds the verified output of operations 0..0 of 3", StringComparison.Ordinal));
        Assert.Equal(image, File.ReadAllBytes(target));
    }

    /// <summary>What a local repository refuses, each by name: a payload of another size or hash than the index says, a missing index, a path outside it.</summary>
    [Fact]
    public void ALocalRepositoryRefusesWhatTheIndexDoesNotVouchFor()
    {
        var (repo, _, _, _, pub) = Repository();
        var client = new UpdateClient(new HttpClient(), new Uri(repo + "/"), [pub]);
        UpdateIndex.PayloadRef payload = client.FetchIndex("stable", Now).Choose("0.1.0")!.Value.Payload;
        string path = Path.Combine(repo, payload.Path);

        var wrong = new UpdateIndex.PayloadRef { Path = payload.Path, Size = payload.Size, Sha256 = new string('0', 64) };
        using (var stream = new LocalPayload(path, wrong))
        {
            var e = Assert.Throws<PayloadException>(() => stream.CopyTo(Stream.Null));
            Assert.StartsWith($"{path}: its {payload.Size} bytes have sha256 ", e.Message);
            Assert.EndsWith($", the index says {wrong.Sha256}", e.Message);
        }
        // A file that grows while it is read is read only up to the index's size, and checks.
        using (Stream stream = client.Open(payload))
        {
            File.AppendAllText(path, "x");
            Assert.Equal(payload.Size, CopyCount(stream));
        }
        Assert.Equal($"{path}: {payload.Size + 1} bytes, the index says {payload.Size}", Assert.Throws<PayloadException>(() => client.Open(payload)).Message);
        // A FIFO where a payload should be would block a reader forever: refused before it is opened.
        File.Delete(path);
        HostOs.Platform.Interop.Sys.MakeNode(path, HostOs.Platform.Interop.Sys.S_IFIFO | 0x1a4, 0, 0);
        Assert.Equal($"{path}: not a regular file", Assert.Throws<PayloadException>(() => client.Open(payload)).Message);

        var outside = new UpdateIndex.PayloadRef { Path = "../elsewhere.hup", Size = 1, Sha256 = wrong.Sha256 };
        Assert.Equal($"'../elsewhere.hup' is outside the repository {repo}", Assert.Throws<PayloadException>(() => client.Open(outside)).Message);

        var e2 = Assert.Throws<PayloadException>(() => client.FetchIndex("beta", Now));
        Assert.Equal($"{Path.Combine(repo, "beta", "index.json")}: not found in the repository", e2.Message);
    }

    private static long CopyCount(Stream stream)
    {
        byte[] buffer = new byte[1 << 16];
        long total = 0;
        for (int n; (n = stream.Read(buffer)) > 0;) total += n;
        return total;
    }

    [Fact]
    public void APayloadOtherThanTheIndexSaysIsRefused()
    {
        var (repo, _, _, _, pub) = Repository();
        var (index, sig) = Files(repo);
        UpdateIndex.PayloadRef payload = UpdateIndex.Verify(index, sig, [pub], "stable", Now).Choose("0.1.0")!.Value.Payload;
        var wrong = new UpdateIndex.PayloadRef { Path = payload.Path, Size = payload.Size, Sha256 = new string('0', 64) };
        string path = Path.Combine(repo, payload.Path);
        using var download = new ResumingDownload(new HttpClient(new FileHandler(path)), new Uri("http://repo.invalid/" + payload.Path), wrong);
        var e = Assert.Throws<PayloadException>(() => download.CopyTo(Stream.Null));
        Assert.Contains("the index says 0000", e.Message);
    }

    /// <summary>Answers every request with the file (no network).</summary>
    private sealed class FileHandler(string path) : HttpMessageHandler
    {
        protected override HttpResponseMessage Send(HttpRequestMessage request, CancellationToken cancellationToken) =>
            new(HttpStatusCode.OK) { Content = new ByteArrayContent(File.ReadAllBytes(path)) };

        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken) =>
            Task.FromResult(Send(request, cancellationToken));
    }
}
