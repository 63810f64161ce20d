using System.Text;
using System.Text.Json;

namespace HostOs.Images;

/// <summary>
/// Images in and out of the store without a registry: OCI image layout directories (and
/// tar archives of one), and `docker save` archives (the classic manifest.json form; newer
/// Docker writes an OCI layout into the same tar, which is read as such).
/// </summary>
public static class ImageImport
{
    private const string RefName = "org.opencontainers.image.ref.name";

    /// <summary>An OCI image layout directory: every image its index.json lists (or the one named).</summary>
    public static List<StoredImage> FromOciLayout(ImageStore store, string dir, string? name = null)
    {
        var files = new DirectorySource(dir);
        return FromLayout(store, files, $"OCI layout {dir}", name);
    }

    /// <summary>A tar archive: `docker save` output, or an OCI layout packed in a tar.</summary>
    public static List<StoredImage> FromArchive(ImageStore store, string tarPath, string? name = null)
    {
        using var archive = new ArchiveSource(tarPath);
        if (archive.Has("manifest.json")) return FromDockerSave(store, archive, tarPath, name);
        if (archive.Has("index.json")) return FromLayout(store, archive, $"archive {tarPath}", name);
        throw new ImageException($"archive {tarPath}: neither manifest.json (docker save) nor index.json (OCI layout) in it");
    }

    private static List<StoredImage> FromLayout(ImageStore store, IFileSource files, string what, string? name)
    {
        if (!files.Has("oci-layout")) throw new ImageException($"{what}: no oci-layout file");
        string layoutVersion = Encoding.UTF8.GetString(files.ReadAll("oci-layout", 4096));
        if (!layoutVersion.Contains("\"1.0.0\"", StringComparison.Ordinal)) throw new ImageException($"{what}: oci-layout is not imageLayoutVersion 1.0.0: {layoutVersion}");
        ImageIndex index;
        try
        {
            index = JsonSerializer.Deserialize(files.ReadAll("index.json", 4 << 20), ImageJson.Default.ImageIndex)
                    ?? throw new ImageException($"{what}: index.json is empty");
        }
        catch (JsonException e)
        {
            throw new ImageException($"{what}: index.json: {e.Message}");
        }
        var source = new LayoutBlobs(files, what);
        var result = new List<StoredImage>();
        if (index.Manifests.Count == 0) throw new ImageException($"{what}: index.json lists no image");
        if (name is not null && index.Manifests.Count > 1)
        {
            // One name for several images is ambiguous unless one of them carries it.
            var named = index.Manifests.Where(m => m.Annotations?.GetValueOrDefault(RefName) is string r && (r == name || name.EndsWith(":" + r, StringComparison.Ordinal))).ToList();
            if (named.Count != 1) throw new ImageException($"{what}: {index.Manifests.Count} images in index.json; which one is '{name}'?");
            return [store.Add([name], named[0], source)];
        }
        foreach (Descriptor d in index.Manifests)
        {
            string imageName = name ?? d.Annotations?.GetValueOrDefault(RefName) ?? d.Annotations?.GetValueOrDefault("io.containerd.image.name") ?? d.Digest!;
            result.Add(store.Add([imageName], d, source));
        }
        return result;
    }

    private static List<StoredImage> FromDockerSave(ImageStore store, ArchiveSource archive, string tarPath, string? name)
    {
        List<DockerSaveEntry> entries;
        try
        {
            entries = JsonSerializer.Deserialize(archive.ReadAll("manifest.json", 4 << 20), ImageJson.Default.ListDockerSaveEntry) ?? [];
        }
        catch (JsonException e)
        {
            throw new ImageException($"archive {tarPath}: manifest.json: {e.Message}");
        }
        if (entries.Count == 0) throw new ImageException($"archive {tarPath}: manifest.json lists no image");
        if (name is not null && entries.Count > 1) throw new ImageException($"archive {tarPath}: {entries.Count} images; import it without a name");
        var result = new List<StoredImage>();
        foreach (DockerSaveEntry e in entries)
        {
            if (e.Config is null) throw new ImageException($"archive {tarPath}: an image without Config in manifest.json");
            // docker save names blobs by path, not digest: hash them as they are stored, then
            // describe them with a manifest of our own. The config's diff ids still check each layer.
            byte[] config = archive.ReadAll(e.Config, 4 << 20);
            Digest configDigest = store.Blobs.Put(config, null, $"{tarPath}:{e.Config}");
            var layers = new List<Descriptor>();
            foreach (string layer in e.Layers)
            {
                long size = archive.SizeOf(layer);
                Digest digest;
                using (Stream s = archive.Open(layer)) digest = store.Blobs.Put(s, null, size, $"{tarPath}:{layer}");
                using Stream head = store.Blobs.Open(digest);
                bool gzip = head.ReadByte() == 0x1f && head.ReadByte() == 0x8b;
                layers.Add(new Descriptor { MediaType = gzip ? MediaTypes.OciLayerGzip : MediaTypes.OciLayer, Digest = digest.ToString(), Size = size });
            }
            var manifest = new ImageManifest
            {
                SchemaVersion = 2,
                MediaType = MediaTypes.OciManifest,
                Config = new Descriptor { MediaType = MediaTypes.OciConfig, Digest = configDigest.ToString(), Size = config.Length },
                Layers = layers,
            };
            byte[] manifestBytes = JsonSerializer.SerializeToUtf8Bytes(manifest, ImageJson.Default.ImageManifest);
            Digest manifestDigest = store.Blobs.Put(manifestBytes, null, $"{tarPath}: manifest");
            var names = name is not null ? [name] : e.RepoTags is { Count: > 0 } tags ? tags : [manifestDigest.ToString()];
            result.Add(store.Add(names, new Descriptor { MediaType = MediaTypes.OciManifest, Digest = manifestDigest.ToString(), Size = manifestBytes.Length },
                new NothingToFetch(tarPath)));
        }
        return result;
    }

    /// <summary>Writes an image as an OCI image layout directory (blobs verified as they are copied).</summary>
    public static void ToOciLayout(ImageStore store, string image, string dir)
    {
        StoredImage stored = store.Find(image);
        string blobs = Path.Combine(dir, "blobs", "sha256");
        Directory.CreateDirectory(blobs);
        var digests = new List<string> { stored.Manifest, stored.Config };
        digests.AddRange(stored.Layers.Select(l => l.Digest));
        foreach (string d in digests.Distinct())
        {
            Digest digest = Digest.Parse(d, "blob");
            string target = Path.Combine(blobs, digest.Hex);
            string temp = target + ".tmp";
            using (Stream source = store.Blobs.Open(digest))
            using (var file = new FileStream(temp, FileMode.Create, FileAccess.Write))
            {
                source.CopyTo(file); // the verifying stream throws at the end on a bad blob
            }
            File.Move(temp, target, overwrite: true);
        }
        File.WriteAllText(Path.Combine(dir, "oci-layout"), "{\"imageLayoutVersion\":\"1.0.0\"}");
        long manifestSize = new FileInfo(Path.Combine(blobs, Digest.Parse(stored.Manifest, "manifest").Hex)).Length;
        var index = new ImageIndex
        {
            SchemaVersion = 2,
            MediaType = MediaTypes.OciIndex,
            Manifests =
            [
                new Descriptor
                {
                    MediaType = MediaTypes.OciManifest, Digest = stored.Manifest, Size = manifestSize,
                    Platform = new Platform { Os = "linux", Architecture = "amd64" },
                    Annotations = new Dictionary<string, string> { [RefName] = stored.Name },
                },
            ],
        };
        File.WriteAllBytes(Path.Combine(dir, "index.json"), JsonSerializer.SerializeToUtf8Bytes(index, ImageJson.Default.ImageIndex));
    }

    // ----- sources

    private interface IFileSource
    {
        bool Has(string path);
        Stream Open(string path);
        byte[] ReadAll(string path, long max);
    }

    private sealed class DirectorySource(string dir) : IFileSource
    {
        public bool Has(string path) => File.Exists(Path.Combine(dir, path));
        public Stream Open(string path) => new FileStream(Path.Combine(dir, path), FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);

        public byte[] ReadAll(string path, long max)
        {
            string full = Path.Combine(dir, path);
            if (!File.Exists(full)) throw new ImageException($"{dir}: no {path}");
            if (new FileInfo(full).Length > max) throw new ImageException($"{full}: larger than {max} bytes");
            return File.ReadAllBytes(full);
        }
    }

    /// <summary>A tar archive indexed once; each file then read at its offset.</summary>
    private sealed class ArchiveSource : IFileSource, IDisposable
    {
        private readonly string _path;
        private readonly Dictionary<string, (long Offset, long Size)> _files = [];

        public ArchiveSource(string path)
        {
            _path = path;
            using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
            var reader = new TarReader(file, $"archive {path}");
            while (reader.Next() is TarEntry e)
            {
                if (e.Type == '0') _files[string.Join('/', LayerUnpacker.Normalize(e.Name, path))] = (e.DataOffset, e.Size);
            }
        }

        public bool Has(string path) => _files.ContainsKey(Key(path));
        public long SizeOf(string path) => Entry(path).Size;

        public Stream Open(string path)
        {
            var (offset, size) = Entry(path);
            var file = new FileStream(_path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
            file.Seek(offset, SeekOrigin.Begin);
            return new BoundedStream(file, size);
        }

        public byte[] ReadAll(string path, long max)
        {
            var (_, size) = Entry(path);
            if (size > max) throw new ImageException($"archive {_path}: {path} is larger than {max} bytes");
            using Stream s = Open(path);
            var buffer = new MemoryStream();
            s.CopyTo(buffer);
            return buffer.ToArray();
        }

        private static string Key(string path) => string.Join('/', path.Split('/', StringSplitOptions.RemoveEmptyEntries).Where(p => p != "."));

        private (long Offset, long Size) Entry(string path) =>
            _files.TryGetValue(Key(path), out var e) ? e : throw new ImageException($"archive {_path}: no file {path} in it");

        public void Dispose() { }
    }

    private sealed class LayoutBlobs(IFileSource files, string what) : IBlobSource
    {
        public Stream Open(Descriptor d)
        {
            Digest digest = Digest.Parse(d.Digest!, $"{what}: descriptor");
            string path = $"blobs/sha256/{digest.Hex}";
            if (!files.Has(path)) throw new ImageException($"{what}: blob {digest} ({d.MediaType}) is missing");
            return files.Open(path);
        }
    }

    private sealed class NothingToFetch(string what) : IBlobSource
    {
        public Stream Open(Descriptor d) => throw new ImageException($"{what}: blob {d.Digest} is missing");
    }

    /// <summary>At most <paramref name="length"/> bytes of the inner stream.</summary>
    internal sealed class BoundedStream(Stream inner, long size) : ReadOnlyStream
    {
        private readonly long _length = size;
        private long _left = size;

        public override int Read(Span<byte> buffer)
        {
            if (_left <= 0) return 0;
            int n = inner.Read(buffer[..(int)Math.Min(buffer.Length, _left)]);
            _left -= n;
            return n;
        }

        public override long Length => _length;
        public override long Position { get => _length - _left; set => throw new NotSupportedException(); }
        protected override void Dispose(bool disposing) { if (disposing) inner.Dispose(); base.Dispose(disposing); }
    }
}
