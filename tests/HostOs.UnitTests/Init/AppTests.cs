using HostOs.ImageTool;
using HostOs.Images;
using HostOs.Platform.Config;
using HostOs.UnitTests.Images;

namespace HostOs.UnitTests.Init;

public class AppDefinitionTests
{
    private const string Web = """
        { "name": "web", "image": "10.0.2.2:5000/demo/web:1", "command": ["httpd", "-f"],
          "ports": [{ "host": 8090, "container": 80 }],
          "volumes": [{ "name": "data", "target": "/www" }],
          "health": { "type": "http", "port": 80 } }
        """;

    [Fact]
    public void AnAppHasDockersDefaults()
    {
        AppContainer app = AppContainer.Parse(Web, "web.json");
        Assert.False(app.ReadonlyRootfs);
        Assert.Equal(ContainerNetwork.Bridge, app.Network);
        Assert.Equal(RestartPolicy.Always, app.Restart);
        Assert.True(app.Required);
        Assert.Equal("data", Assert.Single(app.Volumes).Name);
    }

    [Fact]
    public void ADefinitionSurvivesItsOwnJson()
    {
        AppContainer app = AppContainer.Parse(Web, "web.json");
        AppContainer again = AppContainer.Parse(app.ToJson(), "again");
        Assert.Equal(app.ToJson(), again.ToJson());
        Assert.Equal(80, again.Health!.Port);
        Assert.Equal(8090, again.Ports[0].Host);
    }

    [Theory]
    [InlineData("""{ "name": "Web", "image": "a/b" }""", "lower-case")]
    [InlineData("""{ "name": "w", "image": "a b" }""", "not an image reference")]
    [InlineData("""{ "name": "w", "image": "a/b", "volumes": [{ "name": "d", "target": "www" }] }""", "target 'www' must be an absolute path")]
    [InlineData("""{ "name": "w", "image": "a/b", "volumes": [{ "name": "d", "target": "/a" }, { "name": "d", "target": "/b" }] }""", "volume 'd' is mounted twice")]
    [InlineData("""{ "name": "w", "image": "a/b", "volumes": [{ "name": "d", "target": "/a" }], "binds": [{ "source": "/x", "target": "/a" }] }""", "'/a' is the target of two mounts")]
    [InlineData("""{ "name": "w", "image": "a/b", "volumes": [{ "name": "../d", "target": "/a" }] }""", "volume name '../d'")]
    [InlineData("""{ "name": "w", "image": "a/b", "after": ["w"] }""", "after itself")]
    [InlineData("""{ "name": "w", "image": "a/b", "network": "host", "ports": [{ "host": 1, "container": 2 }] }""", "ports are published from a private network")]
    [InlineData("""{ "name": "w", "image": "a/b", "volume": [] }""", "volume")]
    public void BadDefinitionsAreRefusedByName(string json, string expected) =>
        Assert.Contains(expected, Assert.Throws<InvalidDataException>(() => AppContainer.Parse(json, "app.json")).Message);

    [Fact]
    public void FirstBootCarriesAppsAndInsecureRegistries()
    {
        FirstBootConfig c = FirstBootConfig.Parse("""
            { "registries": [{ "host": "10.0.2.2:5000", "insecure": true }],
              "apps": [{ "name": "web", "image": "10.0.2.2:5000/demo/web:1" }] }
            """, "user-data");
        Assert.True(c.Registries[0].Insecure);
        Assert.Null(c.Registries[0].Username);
        Assert.Equal("web", Assert.Single(c.Apps).Name);
        List<RegistryCredential> back = RegistryCredential.ParseList(FirstBootConfig.ToJson(c.Registries), "registries.json");
        Assert.True(back[0].Insecure);
    }

    [Theory]
    [InlineData("""{ "apps": [{ "name": "a", "image": "x/y" }, { "name": "a", "image": "x/z" }] }""", "apps: 'a' is listed twice")]
    [InlineData("""{ "apps": [{ "name": "a", "image": "x/y", "volumes": [{ "name": "v", "target": "rel" }] }] }""", "target 'rel'")]
    [InlineData("""{ "registries": [{ "host": "r:5000", "username": "u" }] }""", "both a username and a password, or neither")]
    public void FirstBootRefusesBadAppsByName(string json, string expected) =>
        Assert.Contains(expected, Assert.Throws<InvalidDataException>(() => FirstBootConfig.Parse(json, "user-data")).Message);
}

/// <summary>
/// hostos-images' commands on a temporary store and apps directory, against a real
/// docker-registry on 127.0.0.1: prepare pulls once and then works without the registry,
/// records the image the init mounts from, and prune drops what no app names.
/// </summary>
public sealed class ImageToolTests : IDisposable
{
    private readonly string _work = Directory.CreateTempSubdirectory("image-tool-").FullName;
    private readonly List<string> _said = [];

    public void Dispose() => Directory.Delete(_work, recursive: true);

    private string Apps => Path.Combine(_work, "apps");

    private ImageTool.ImageTool Tool(ImageStore store, string registries) => new(store, Apps, registries, _said.Add);

    private void WriteApp(string name, string image)
    {
        Directory.CreateDirectory(Path.Combine(Apps, name));
        File.WriteAllText(Path.Combine(Apps, name, "app.json"), $$"""{ "name": "{{name}}", "image": "{{image}}" }""");
    }

    private async Task<(Registry Registry, StoredImage Demo)> RegistryWithDemo(string reference)
    {
        var registry = new Registry();
        string layout = Path.Combine(_work, "layout");
        ImageStoreTests.MakeLayout(layout, "demo:1", [ImageStoreTests.BaseLayer, ImageStoreTests.TopLayer]);
        var source = new ImageStore(Path.Combine(_work, "source"));
        ImageImport.FromOciLayout(source, layout);
        using var client = new RegistryClient(new RegistryOptions { Insecure = [registry.Host] });
        await client.PushAsync(source, "demo:1", $"{registry.Host}/{reference}");
        return (registry, source.Find("demo:1"));
    }

    [RootFact]
    public async Task PrepareThenPruneAnApp()
    {
        var (registry, demo) = await RegistryWithDemo("demo/app:1");
        string reference = $"{registry.Host}/demo/app:1";
        string registries = Path.Combine(_work, "registries.json");
        File.WriteAllText(registries, $$"""[{ "host": "{{registry.Host}}", "insecure": true }]""");
        var store = new ImageStore(Path.Combine(_work, "store"));
        WriteApp("web", reference);

        using (registry)
        {
            await Tool(store, registries).PrepareAsync("web", CancellationToken.None);
        }
        Assert.Contains(_said, s => s.StartsWith($"pulled {reference}", StringComparison.Ordinal));
        BakedImage image = InitConfig.ParseBakedImage(File.ReadAllText(Path.Combine(Apps, "web", "image.json")), "image.json");
        Assert.Equal((reference, demo.Manifest), (image.Name, image.Manifest));
        Assert.Equal([Digest.Of(ImageStoreTests.BaseLayer).Hex, Digest.Of(ImageStoreTests.TopLayer).Hex], image.Layers);
        Assert.Equal(["/bin/sh"], image.Cmd);
        Assert.True(File.Exists(Path.Combine(store.LayerPath(Digest.Of(ImageStoreTests.TopLayer)), "var/cache/new")));

        // The registry is gone: a second prepare (a reboot) needs no network.
        File.Delete(Path.Combine(Apps, "web", "image.json"));
        _said.Clear();
        await Tool(store, registries).PrepareAsync("web", CancellationToken.None);
        Assert.DoesNotContain(_said, s => s.StartsWith("pulling", StringComparison.Ordinal));
        Assert.True(File.Exists(Path.Combine(Apps, "web", "image.json")));

        // While an app names it, prune keeps it; once none does, image and layers go, but
        // only when named (or when everything is pruned).
        Tool(store, registries).Prune([]);
        Assert.Single(store.Images());
        Directory.Delete(Path.Combine(Apps, "web"), recursive: true);
        Tool(store, registries).Prune(["other/image:1"]);
        Assert.Single(store.Images());
        Tool(store, registries).Prune([reference]);
        Assert.Empty(store.Images());
        Assert.False(Directory.Exists(store.LayerPath(Digest.Of(ImageStoreTests.TopLayer))));
    }

    [RootFact]
    public async Task AMissingImageIsNamedAndNothingIsRecorded()
    {
        var (registry, _) = await RegistryWithDemo("demo/app:1");
        using (registry)
        {
            string registries = Path.Combine(_work, "registries.json");
            File.WriteAllText(registries, $$"""[{ "host": "{{registry.Host}}", "insecure": true }]""");
            WriteApp("web", $"{registry.Host}/demo/app:nope");
            var store = new ImageStore(Path.Combine(_work, "store"));
            var e = await Assert.ThrowsAsync<ImageException>(() => Tool(store, registries).PrepareAsync("web", CancellationToken.None));
            Assert.Contains("404", e.Message);
            Assert.False(File.Exists(Path.Combine(Apps, "web", "image.json")));
            Assert.Empty(store.Images());
        }
    }

    [RootFact]
    public async Task PushSendsALayoutToARegistry()
    {
        using var registry = new Registry();
        string layout = Path.Combine(_work, "layout");
        ImageStoreTests.MakeLayout(layout, "demo:1", [ImageStoreTests.BaseLayer]);
        var store = new ImageStore(Path.Combine(_work, "store"));
        string reference = $"{registry.Host}/pipeline/demo:7";
        await Tool(store, "/nonexistent").PushAsync(layout, reference, insecure: true);
        Assert.Contains($"pushed {reference}", _said);
        using var client = new RegistryClient(new RegistryOptions { Insecure = [registry.Host] });
        StoredImage pulled = await client.PullAsync(reference, new ImageStore(Path.Combine(_work, "pulled")));
        Assert.Equal(store.Find(reference).Manifest, pulled.Manifest);
    }

    [Fact]
    public async Task AnAppWithoutDefinitionOrWithABadReferenceIsNamed()
    {
        var store = new ImageStore(Path.Combine(_work, "store"));
        var e = await Assert.ThrowsAsync<InvalidDataException>(() => Tool(store, "/nonexistent").PrepareAsync("ghost", CancellationToken.None));
        Assert.Contains("app 'ghost' has no definition", e.Message);
        WriteApp("bad", "UPPER/case");
        var bad = await Assert.ThrowsAsync<ImageException>(() => Tool(store, "/nonexistent").PrepareAsync("bad", CancellationToken.None));
        Assert.Contains("'UPPER/case'", bad.Message);
    }
}
