using System.IO.Compression;
using System.Text;
using System.Text.Json.Nodes;
using HostOs.Images;

namespace HostOs.UnitTests.Images;

/// <summary>
/// Builds OCI image layouts and docker-save archives from test tars, imports them and
/// checks the store: verification, sharing, multi-arch selection, overlay roots, export,
/// garbage collection. Root is needed for unpacking (owners, whiteouts) and mounting.
/// </summary>
public class ImageStoreTests : IDisposable
{
    private readonly string _work = Directory.CreateTempSubdirectory("images-").FullName;
    private string StoreRoot => Path.Combine(_work, "store");

    public void Dispose()
    {
        foreach (string line in File.ReadAllLines("/proc/self/mountinfo"))
        {
            string mountPoint = line.Split(' ')[4];
            if (mountPoint.StartsWith(_work, StringComparison.Ordinal)) HostOs.Platform.Interop.Sys.Umount(mountPoint, HostOs.Platform.Interop.Sys.MNT_DETACH);
        }
        Directory.Delete(_work, recursive: true);
    }

    internal static byte[] Gzip(byte[] data)
    {
        var ms = new MemoryStream();
        using (var gz = new GZipStream(ms, CompressionLevel.Fastest, leaveOpen: true)) gz.Write(data);
        return ms.ToArray();
    }

    internal static readonly byte[] BaseLayer = new TestTar().File("bin/sh", "#!shell", mode: 0x1ED).File("etc/motd", "hello").File("var/cache/old", "o").Build();
    internal static readonly byte[] TopLayer = new TestTar().File("etc/.wh.motd", "").Dir("var/cache/").File("var/cache/.wh..wh..opq", "").File("var/cache/new", "n").Build();

    /// <summary>An OCI layout at DIR: linux/amd64 (and an arm64 decoy) behind a multi-arch index named NAME.</summary>
    internal static (string Manifest, string Index) MakeLayout(string dir, string name, byte[][] layers, bool gzipFirst = true, string[]? diffIds = null, bool amd64 = true)
    {
        string blobs = Directory.CreateDirectory(Path.Combine(dir, "blobs", "sha256")).FullName;
        string Put(byte[] data)
        {
            Digest d = Digest.Of(data);
            File.WriteAllBytes(Path.Combine(blobs, d.Hex), data);
            return d.ToString();
        }
        JsonObject Desc(string mediaType, byte[] blob, string? arch = null)
        {
            var o = new JsonObject { ["mediaType"] = mediaType, ["digest"] = Put(blob), ["size"] = blob.Length };
            if (arch is not null) o["platform"] = new JsonObject { ["architecture"] = arch, ["os"] = "linux" };
            return o;
        }
        var layerDescriptors = new JsonArray(layers.Select((l, i) =>
            (JsonNode)Desc(i == 0 && gzipFirst ? MediaTypes.OciLayerGzip : MediaTypes.OciLayer, i == 0 && gzipFirst ? Gzip(l) : l)).ToArray());
        var config = new JsonObject
        {
            ["architecture"] = "amd64", ["os"] = "linux",
            ["config"] = new JsonObject { ["Env"] = new JsonArray("PATH=/bin"), ["Cmd"] = new JsonArray("/bin/sh") },
            ["rootfs"] = new JsonObject { ["type"] = "layers", ["diff_ids"] = new JsonArray((diffIds ?? layers.Select(l => Digest.Of(l).ToString()).ToArray()).Select(d => (JsonNode)d!).ToArray()) },
        };
        byte[] manifest = Encoding.UTF8.GetBytes(new JsonObject
        {
            ["schemaVersion"] = 2, ["mediaType"] = MediaTypes.OciManifest,
            ["config"] = Desc(MediaTypes.OciConfig, Encoding.UTF8.GetBytes(config.ToJsonString())),
            ["layers"] = layerDescriptors,
        }.ToJsonString());
        string manifestDigest = Digest.Of(manifest).ToString();
        byte[] decoy = Encoding.UTF8.GetBytes("{\"schemaVersion\":2,\"mediaType\":\"" + MediaTypes.OciManifest + "\",\"layers\":[]}");
        var manifests = new JsonArray(Desc(MediaTypes.OciManifest, decoy, "arm64"));
        if (amd64) manifests.Add((JsonNode)Desc(MediaTypes.OciManifest, manifest, "amd64"));
        else Put(manifest);
        byte[] index = Encoding.UTF8.GetBytes(new JsonObject { ["schemaVersion"] = 2, ["mediaType"] = MediaTypes.OciIndex, ["manifests"] = manifests }.ToJsonString());
        var top = Desc(MediaTypes.OciIndex, index);
        string indexDigest = (string)top["digest"]!;
        top["annotations"] = new JsonObject { ["org.opencontainers.image.ref.name"] = name };
        File.WriteAllText(Path.Combine(dir, "oci-layout"), "{\"imageLayoutVersion\": \"1.0.0\"}");
        File.WriteAllText(Path.Combine(dir, "index.json"), new JsonObject { ["schemaVersion"] = 2, ["manifests"] = new JsonArray(top) }.ToJsonString());
        return (manifestDigest, indexDigest);
    }

    [RootFact]
    public void ImportPicksAmd64VerifiesAndSharesLayers()
    {
        string layout = Path.Combine(_work, "layout");
        var (manifest, _) = MakeLayout(layout, "demo:1", [BaseLayer, TopLayer]);
        var store = new ImageStore(StoreRoot);
        var images = ImageImport.FromOciLayout(store, layout);
        Assert.Equal(("demo:1", manifest), (images[0].Name, images[0].Manifest));
        Assert.Equal(2, Directory.GetDirectories(Path.Combine(StoreRoot, "layers")).Length);
        Assert.Equal("hello", File.ReadAllText(Path.Combine(store.LayerPath(Digest.Of(BaseLayer)), "etc/motd")));

        // A second image with the same base layer: that layer is unpacked once, shared.
        string other = Path.Combine(_work, "other");
        MakeLayout(other, "other:1", [BaseLayer, new TestTar().File("app", "a").Build()]);
        ImageImport.FromOciLayout(store, other);
        Assert.Equal(3, Directory.GetDirectories(Path.Combine(StoreRoot, "layers")).Length);
        Assert.Equal(2, store.LayerReferences()[Digest.Of(BaseLayer).ToString()]);
        Assert.Equal(["demo:1", "other:1"], store.Images().Select(i => i.Name).Order());
    }

    [RootFact]
    public void ATamperedBlobIsRefusedAndLeavesNothing()
    {
        string layout = Path.Combine(_work, "layout");
        MakeLayout(layout, "demo:1", [BaseLayer, TopLayer]);
        string layerBlob = Path.Combine(layout, "blobs", "sha256", Digest.Of(TopLayer).Hex);
        byte[] bytes = File.ReadAllBytes(layerBlob);
        bytes[700] ^= 1;
        File.WriteAllBytes(layerBlob, bytes);
        var store = new ImageStore(StoreRoot);
        var e = Assert.Throws<ImageException>(() => ImageImport.FromOciLayout(store, layout));
        Assert.Contains($"not the announced {Digest.Of(TopLayer)}", e.Message);
        Assert.Empty(store.Images());
        Assert.False(store.Blobs.Has(Digest.Of(TopLayer)));
        Assert.False(Directory.Exists(store.LayerPath(Digest.Of(TopLayer))));
        Assert.Empty(Directory.GetFileSystemEntries(Path.Combine(StoreRoot, "tmp")));
    }

    [RootFact]
    public void AWrongDiffIdIsRefused()
    {
        string layout = Path.Combine(_work, "layout");
        MakeLayout(layout, "demo:1", [BaseLayer], diffIds: [Digest.Of("not the layer"u8).ToString()]);
        var e = Assert.Throws<ImageException>(() => ImageImport.FromOciLayout(new ImageStore(StoreRoot), layout));
        Assert.Contains("not the config's diff id", e.Message);
        Assert.Empty(Directory.GetDirectories(Path.Combine(StoreRoot, "layers")));
    }

    [Fact]
    public void AnIndexWithoutAmd64NamesWhatItHas()
    {
        string layout = Path.Combine(_work, "layout");
        MakeLayout(layout, "demo:1", [BaseLayer], amd64: false);
        var e = Assert.Throws<ImageException>(() => ImageImport.FromOciLayout(new ImageStore(StoreRoot), layout));
        Assert.Contains("has no linux/amd64 image (it has: linux/arm64)", e.Message);
    }

    [RootFact]
    public void OverlayRootHonoursWhiteoutsAndGarbageCollectionHonoursPins()
    {
        string layout = Path.Combine(_work, "layout");
        MakeLayout(layout, "demo:1", [BaseLayer, TopLayer]);
        var store = new ImageStore(StoreRoot);
        ImageImport.FromOciLayout(store, layout);
        ContainerRoot root = store.MountRoot("c1", "demo:1");
        Assert.Equal(["/bin/sh"], root.Config.Config!.Cmd);
        Assert.True(File.Exists(Path.Combine(root.Rootfs, "bin/sh")));
        Assert.False(File.Exists(Path.Combine(root.Rootfs, "etc/motd")));                      // whiteout
        Assert.Equal(["new"], Directory.GetFiles(Path.Combine(root.Rootfs, "var/cache")).Select(Path.GetFileName)); // opaque
        File.WriteAllText(Path.Combine(root.Rootfs, "written"), "w");
        Assert.True(File.Exists(Path.Combine(StoreRoot, "containers/c1/upper/written")));
        Assert.False(File.Exists(Path.Combine(store.LayerPath(Digest.Of(TopLayer)), "written")));

        // The image goes, but the running container pins its layers.
        store.Remove("demo:1");
        var gc = store.CollectGarbage();
        Assert.Equal(0, gc.Layers);
        Assert.True(File.Exists(Path.Combine(root.Rootfs, "bin/sh")));
        // Once its root is removed, everything goes.
        store.RemoveRoot("c1");
        gc = store.CollectGarbage();
        Assert.Equal(2, gc.Layers);
        Assert.Equal(4, gc.Blobs); // manifest, config, two layers (the index was never kept)
        Assert.Empty(store.Blobs.All());
    }

    [RootFact]
    public void ExportThenImportGivesTheSameImage()
    {
        string layout = Path.Combine(_work, "layout");
        var (manifest, _) = MakeLayout(layout, "demo:1", [BaseLayer, TopLayer]);
        var store = new ImageStore(StoreRoot);
        ImageImport.FromOciLayout(store, layout);
        string exported = Path.Combine(_work, "exported");
        ImageImport.ToOciLayout(store, "demo:1", exported);
        var again = ImageImport.FromOciLayout(new ImageStore(Path.Combine(_work, "store2")), exported);
        Assert.Equal(("demo:1", manifest), (again[0].Name, again[0].Manifest));
    }

    [RootFact]
    public void DockerSaveArchivesAreImported()
    {
        string config = "{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"Cmd\":[\"/bin/sh\"]},\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"" +
                        Digest.Of(BaseLayer) + "\",\"" + Digest.Of(TopLayer) + "\"]}}";
        string manifest = "[{\"Config\":\"abc.json\",\"RepoTags\":[\"busybox:latest\",\"busybox:1\"],\"Layers\":[\"l1/layer.tar\",\"l2/layer.tar\"]}]";
        byte[] archive = new TestTar()
            .Entry("l1/layer.tar", '0', BaseLayer).Entry("l2/layer.tar", '0', TopLayer)
            .File("abc.json", config).File("manifest.json", manifest).Build();
        string path = Path.Combine(_work, "saved.tar");
        File.WriteAllBytes(path, archive);
        var store = new ImageStore(StoreRoot);
        var images = ImageImport.FromArchive(store, path);
        Assert.Equal(["busybox:1", "busybox:latest"], store.Images().Select(i => i.Name).Order());
        Assert.Equal(2, images[0].Layers.Count);
        Assert.True(File.Exists(Path.Combine(store.LayerPath(Digest.Of(TopLayer)), "var/cache/new")));
    }

    [Fact]
    public void ABlobRottenOnDiskIsCaughtWhenRead()
    {
        var blobs = new BlobStore(StoreRoot);
        Digest d = blobs.Put("some content"u8.ToArray(), null, "test");
        File.WriteAllText(blobs.PathOf(d), "some c0ntent");
        Assert.Contains("corrupt in the store", Assert.Throws<ImageException>(() => blobs.ReadAll(d, 1024)).Message);
        using Stream s = blobs.Open(d);
        Assert.Contains($"not {d}", Assert.Throws<ImageException>(() => s.CopyTo(Stream.Null)).Message);
    }

    [Fact]
    public void InterruptedWritesAreInvisibleAndCollected()
    {
        var store = new ImageStore(StoreRoot);
        // What a crash mid-write leaves: a partial blob and a partial layer, only under tmp/.
        File.WriteAllText(Path.Combine(StoreRoot, "tmp", "blob-0123"), "half a blob");
        Directory.CreateDirectory(Path.Combine(StoreRoot, "tmp", "layer-4567", "etc"));
        Assert.Empty(store.Blobs.All());
        Assert.Empty(store.Images());
        Assert.Equal(2, store.CollectGarbage().Temporary);
        Assert.Empty(Directory.GetFileSystemEntries(Path.Combine(StoreRoot, "tmp")));
    }
}
