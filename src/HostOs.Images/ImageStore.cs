using System.IO.Compression;
using System.Text.Json;
using HostOs.Platform;
using HostOs.Platform.Config;
using HostOs.Platform.Interop;

namespace HostOs.Images;

/// <summary>Where an image's blobs come from while it is added: a layout, an archive, a registry.</summary>
public interface IBlobSource
{
    /// <summary>The raw bytes of the blob the descriptor names (the store verifies them).</summary>
    Stream Open(Descriptor descriptor);
}

/// <summary>A container's root file system made from an image (an overlay mount).</summary>
public sealed record ContainerRoot(string Id, string Rootfs, StoredImage Image, ImageConfig Config);

/// <summary>
/// The image store (docs/images.md), by default /var/lib/hostos/images:
///   blobs/sha256/HEX      content-addressed blobs (<see cref="BlobStore"/>)
///   layers/HEX            each layer unpacked once, named by its diff id, shared by every
///                         image and container that uses it (overlayfs lower directories)
///   containers/ID/        upper, work, rootfs (the overlay mount) and image.json (its pin)
///   images.json           name → manifest, config and layers
///   tmp/                  whatever is being written; emptied by <see cref="CollectGarbage"/>
///   downloads/HEX.partial registry downloads in progress, resumed after an interruption
/// Every change lands by rename (blobs, layers, images.json), so a crash leaves the store as
/// it was before or after it, with at most leftovers in tmp/. Mutations hold ROOT/lock.
/// ROOT is mode 0700: layers keep their setuid-root files.
/// </summary>
public sealed class ImageStore
{
    public const string DefaultRoot = "/var/lib/hostos/images";
    private const long MaxDocument = 4 << 20; // manifests, indexes, configs (containerd's limit)

    private readonly string _root, _layers, _containers, _tmp;
    public BlobStore Blobs { get; }
    public UnpackPolicy Policy { get; init; } = new();

    public ImageStore(string root)
    {
        _root = Path.GetFullPath(root);
        _layers = Path.Combine(_root, "layers");
        _containers = Path.Combine(_root, "containers");
        _tmp = Path.Combine(_root, "tmp");
        // Root only: unpacked layers keep their setuid files, which no host user may reach.
        Directory.CreateDirectory(_root, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        File.SetUnixFileMode(_root, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        Blobs = new BlobStore(_root);
        Directory.CreateDirectory(_layers);
        Directory.CreateDirectory(_containers);
    }

    public string LayerPath(Digest diffId) => Path.Combine(_layers, diffId.Hex);

    /// <summary>Where a download of the blob accumulates (kept across interruptions, for resuming).</summary>
    public string PartialDownload(Digest digest)
    {
        string dir = Path.Combine(_root, "downloads");
        Directory.CreateDirectory(dir);
        return Path.Combine(dir, digest.Hex + ".partial");
    }

    // ----- images

    public List<StoredImage> Images()
    {
        string path = Path.Combine(_root, "images.json");
        if (!File.Exists(path)) return [];
        try
        {
            return JsonSerializer.Deserialize(File.ReadAllText(path), ImageJson.Default.ListStoredImage) ?? [];
        }
        catch (JsonException e)
        {
            throw new ImageException($"{path} is unreadable: {e.Message}");
        }
    }

    /// <summary>The image's config (run defaults, diff ids), read back from its verified blob.</summary>
    public ImageConfig ConfigOf(StoredImage image) =>
        JsonSerializer.Deserialize(Blobs.ReadAll(Digest.Parse(image.Config, "config"), MaxDocument), ImageJson.Default.ImageConfig)
        ?? throw new ImageException($"image {image.Name}: config {image.Config} is empty");

    /// <summary>
    /// How a container runs the image (the init's view, <see cref="BakedImage"/>): its layers
    /// bottom first by diff id hex, and the config's run defaults.
    /// </summary>
    public BakedImage RunImage(StoredImage stored, string name)
    {
        ImageConfig config = ConfigOf(stored);
        return new BakedImage
        {
            Name = name,
            Manifest = stored.Manifest,
            Layers = stored.Layers.Select(l => Digest.Parse(l.DiffId, "diff id").Hex).ToList(),
            Entrypoint = config.Config?.Entrypoint,
            Cmd = config.Config?.Cmd,
            Env = config.Config?.Env ?? [],
            WorkingDir = string.IsNullOrEmpty(config.Config?.WorkingDir) ? null : config.Config.WorkingDir,
            User = string.IsNullOrEmpty(config.Config?.User) ? null : config.Config.User,
        };
    }

    public StoredImage Find(string name) =>
        Images().FirstOrDefault(i => i.Name == name || i.Manifest == name)
        ?? throw new ImageException($"image '{name}' is not in the store");

    /// <summary>
    /// Adds the image <paramref name="top"/> names (an index, of which linux/amd64 is taken,
    /// or a manifest) under <paramref name="names"/>: every blob fetched from the source is
    /// verified before it is kept, every layer unpacked once and checked against the
    /// config's diff id. Nothing is recorded until all of it is in place.
    /// </summary>
    public StoredImage Add(IEnumerable<string> names, Descriptor top, IBlobSource source)
    {
        using var held = Lock();
        Descriptor manifestDescriptor = ResolvePlatform(top, source);
        ImageManifest manifest = Parse(FetchDocument(manifestDescriptor, source, "manifest"), ImageJson.Default.ImageManifest, manifestDescriptor);
        if (manifest.Config?.Digest is null) throw new ImageException($"manifest {manifestDescriptor.Digest}: no config");
        byte[] configBytes = FetchDocument(manifest.Config, source, "config");
        ImageConfig config = Parse(configBytes, ImageJson.Default.ImageConfig, manifest.Config);
        if (config.Os is not (null or "linux") || config.Architecture is not (null or "amd64"))
        {
            throw new ImageException($"image config {manifest.Config.Digest}: {config.Os}/{config.Architecture}, not linux/amd64");
        }
        List<string> diffIds = config.Rootfs?.DiffIds ?? [];
        if (diffIds.Count != manifest.Layers.Count)
        {
            throw new ImageException($"manifest {manifestDescriptor.Digest}: {manifest.Layers.Count} layers but the config lists {diffIds.Count} diff ids");
        }
        var layers = new List<StoredLayer>();
        for (int i = 0; i < manifest.Layers.Count; i++)
        {
            Descriptor d = manifest.Layers[i];
            Digest blob = Digest.Parse(d.Digest!, $"layer {i} digest");
            Digest diffId = Digest.Parse(diffIds[i], $"config diff_ids[{i}]");
            if (!Blobs.Has(blob))
            {
                using Stream raw = source.Open(d);
                Blobs.Put(raw, blob, d.Size, $"layer {blob}");
            }
            EnsureUnpacked(blob, d.MediaType, diffId);
            layers.Add(new StoredLayer { Digest = blob.ToString(), MediaType = d.MediaType ?? "", Size = d.Size, DiffId = diffId.ToString() });
        }
        var stored = new List<StoredImage>();
        var images = Images();
        foreach (string name in names)
        {
            var image = new StoredImage
            {
                Name = name,
                Manifest = manifestDescriptor.Digest!,
                Config = manifest.Config.Digest,
                Layers = layers,
                Created = DateTime.UtcNow.ToString("O"),
            };
            images.RemoveAll(i => i.Name == name);
            images.Add(image);
            stored.Add(image);
        }
        SaveImages(images);
        return stored.FirstOrDefault() ?? throw new ImageException("no name given for the image");
    }

    /// <summary>An index becomes its linux/amd64 manifest; anything else must be a manifest.</summary>
    private Descriptor ResolvePlatform(Descriptor top, IBlobSource source)
    {
        if (MediaTypes.IsManifest(top.MediaType)) return top;
        if (!MediaTypes.IsIndex(top.MediaType)) throw new ImageException($"{top.Digest}: media type '{top.MediaType}' is neither an image index nor a manifest");
        ImageIndex index = Parse(FetchDocument(top, source, "index"), ImageJson.Default.ImageIndex, top);
        Descriptor? chosen = index.Manifests.FirstOrDefault(m => IsAmd64Manifest(m))
                             ?? (index.Manifests.Count == 1 && index.Manifests[0].Platform is null && MediaTypes.IsManifest(index.Manifests[0].MediaType) ? index.Manifests[0] : null);
        if (chosen is null)
        {
            string platforms = string.Join(", ", index.Manifests.Select(m => m.Platform is { } p ? $"{p.Os}/{p.Architecture}{(p.Variant is null ? "" : "/" + p.Variant)}" : "unknown"));
            throw new ImageException($"index {top.Digest} has no linux/amd64 image (it has: {platforms})");
        }
        return chosen;
    }

    /// <summary>The index entry a linux/amd64 machine runs (an entry without a media type is taken as a manifest).</summary>
    internal static bool IsAmd64Manifest(Descriptor m) =>
        m.Platform is { Os: "linux", Architecture: "amd64" } && (m.MediaType is null || MediaTypes.IsManifest(m.MediaType));

    /// <summary>A small document, fetched (or found) and verified, kept in the store.</summary>
    private byte[] FetchDocument(Descriptor d, IBlobSource source, string kind)
    {
        Digest digest = Digest.Parse(d.Digest!, $"{kind} digest");
        if (d.Size > MaxDocument) throw new ImageException($"{kind} {digest}: {d.Size} bytes is more than {MaxDocument} a document may have");
        if (!Blobs.Has(digest))
        {
            using Stream raw = source.Open(d);
            Blobs.Put(raw, digest, d.Size > 0 ? d.Size : null, $"{kind} {digest}");
        }
        return Blobs.ReadAll(digest, MaxDocument);
    }

    private static T Parse<T>(byte[] json, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> type, Descriptor d)
    {
        try
        {
            return JsonSerializer.Deserialize(json, type) ?? throw new ImageException($"{d.Digest}: empty document");
        }
        catch (JsonException e)
        {
            throw new ImageException($"{d.Digest} ({d.MediaType}): not a valid document: {e.Message}");
        }
    }

    /// <summary>
    /// layers/DIFFID from the blob, once: unpacked into tmp/, its uncompressed stream hashed
    /// as it is read and compared with the diff id, then renamed into place.
    /// </summary>
    private void EnsureUnpacked(Digest blob, string? mediaType, Digest diffId)
    {
        string final = LayerPath(diffId);
        if (Directory.Exists(final)) return;
        string work = Path.Combine(_tmp, "layer-" + Guid.NewGuid().ToString("N"));
        try
        {
            using (var verified = (VerifyingStream)Blobs.Open(blob))
            {
                using var tar = new HashingStream(Decompress(verified, mediaType, blob));
                LayerUnpacker.Unpack(tar, work, Policy, $"layer {blob}");
                tar.DrainToEnd();
                Digest actual = tar.Digest();
                if (actual != diffId) throw new ImageException($"layer {blob}: its uncompressed content hashes to {actual}, not the config's diff id {diffId}");
                verified.VerifyToEnd();
            }
            // The layer's files reach the disk before its name does: after a power cut a
            // layers/DIFFID is whole or absent, never a directory of empty files.
            Sys.SyncFileSystem(work);
            Directory.Move(work, final);
            Sys.FsyncDirectory(_layers);
        }
        finally
        {
            if (Directory.Exists(work)) Directory.Delete(work, recursive: true);
        }
    }

    /// <summary>By media type, or by magic number for archives that do not say (docker save).</summary>
    private static Stream Decompress(Stream raw, string? mediaType, Digest blob)
    {
        var peek = new PeekStream(raw, 4);
        ReadOnlySpan<byte> magic = peek.Head;
        bool gzip = magic.Length >= 2 && magic[0] == 0x1f && magic[1] == 0x8b;
        bool zstd = magic.Length >= 4 && magic[0] == 0x28 && magic[1] == 0xb5 && magic[2] == 0x2f && magic[3] == 0xfd;
        string type = mediaType ?? "";
        if (type.Contains("gzip") && !gzip) throw new ImageException($"layer {blob}: media type {type} but not gzip data");
        if (type.Contains("zstd") && !zstd) throw new ImageException($"layer {blob}: media type {type} but not zstd data");
        if (!(type == "" || type.Contains(".layer.") || type.Contains("rootfs.diff")))
        {
            throw new ImageException($"layer {blob}: media type '{type}' is not a layer");
        }
        if (gzip) return new GZipStream(peek, CompressionMode.Decompress);
        if (zstd) return new ZstdSharp.DecompressionStream(peek);
        return peek;
    }

    /// <summary>A stream whose first bytes can be looked at before they are read.</summary>
    private sealed class PeekStream : ReadOnlyStream
    {
        private readonly Stream _inner;
        private readonly byte[] _head;
        private int _headLength, _headPosition;

        public PeekStream(Stream inner, int count)
        {
            _inner = inner;
            _head = new byte[count];
            while (_headLength < count)
            {
                int n = inner.Read(_head, _headLength, count - _headLength);
                if (n == 0) break;
                _headLength += n;
            }
        }

        public ReadOnlySpan<byte> Head => _head.AsSpan(0, _headLength);

        public override int Read(Span<byte> buffer)
        {
            if (_headPosition < _headLength)
            {
                int n = Math.Min(buffer.Length, _headLength - _headPosition);
                _head.AsSpan(_headPosition, n).CopyTo(buffer);
                _headPosition += n;
                return n;
            }
            return _inner.Read(buffer);
        }

    }

    private void SaveImages(List<StoredImage> images)
    {
        AtomicFile.Write(Path.Combine(_root, "images.json"), JsonSerializer.SerializeToUtf8Bytes(images, ImageJson.Default.ListStoredImage), durable: true);
    }

    public void Remove(string name)
    {
        using var held = Lock();
        var images = Images();
        if (images.RemoveAll(i => i.Name == name) == 0) throw new ImageException($"image '{name}' is not in the store");
        SaveImages(images);
    }

    // ----- container roots

    /// <summary>
    /// Mounts ROOT/containers/ID/rootfs: overlayfs with the image's layers (top first) as
    /// lower directories and a private upper directory. The image is pinned (image.json)
    /// before the mount, so garbage collection keeps its layers while the container lives.
    /// </summary>
    public ContainerRoot MountRoot(string id, string image)
    {
        if (id.Length == 0 || id.Contains('/') || id is "." or "..") throw new ImageException($"container id '{id}' cannot name a directory");
        StoredImage stored;
        string dir = Path.Combine(_containers, id);
        using (Lock())
        {
            stored = Find(image);
            if (Directory.Exists(dir)) throw new ImageException($"container {id} already has a root in the store");
            Directory.CreateDirectory(dir);
            AtomicFile.Write(Path.Combine(dir, "image.json"), JsonSerializer.SerializeToUtf8Bytes([stored], ImageJson.Default.ListStoredImage), durable: true);
        }
        try
        {
            return MountPinned(id, image, stored, dir);
        }
        catch
        {
            // A failed mount leaves no pin behind (it would keep the image from GC forever).
            RemoveRoot(id);
            throw;
        }
    }

    private ContainerRoot MountPinned(string id, string image, StoredImage stored, string dir)
    {
        ImageConfig config = JsonSerializer.Deserialize(Blobs.ReadAll(Digest.Parse(stored.Config, "config"), MaxDocument), ImageJson.Default.ImageConfig)!;
        string upper = Path.Combine(dir, "upper"), work = Path.Combine(dir, "work"), rootfs = Path.Combine(dir, "rootfs");
        foreach (string d in new[] { upper, work, rootfs }) Directory.CreateDirectory(d);
        var lowers = Enumerable.Reverse(stored.Layers).Select(l => LayerPath(Digest.Parse(l.DiffId, "diff id"))).ToList();
        foreach (string l in lowers)
        {
            if (!Directory.Exists(l)) throw new ImageException($"image {image}: layer {l} is missing from the store");
        }
        string options = $"lowerdir={string.Join(':', lowers)},upperdir={upper},workdir={work}";
        if (options.Length > 4000) throw new ImageException($"image {image}: {lowers.Count} layers make overlay options longer than a page");
        Sys.Mount("overlay", rootfs, "overlay", MountFlags.None, options);
        return new ContainerRoot(id, rootfs, stored, config);
    }

    /// <summary>Unmounts and removes a container's root (its upper directory with it).</summary>
    public void RemoveRoot(string id)
    {
        if (id.Length == 0 || id.Contains('/') || id is "." or "..") throw new ImageException($"container id '{id}' cannot name a directory");
        string dir = Path.Combine(_containers, id);
        if (!Directory.Exists(dir)) return;
        string rootfs = Path.Combine(dir, "rootfs");
        if (HostOs.Platform.Kernel.MountInfo.IsMountPoint(rootfs)) Sys.Umount(rootfs, Sys.MNT_DETACH);
        Directory.Delete(dir, recursive: true);
    }

    // ----- garbage collection

    public sealed record GcResult(int Blobs, int Layers, int Temporary, long Bytes);

    /// <summary>
    /// Removes every blob and layer no image and no container root refers to, and what
    /// interrupted writes left in tmp/. References are counted from images.json and each
    /// container's pin; anything counted once or more stays.
    /// </summary>
    public GcResult CollectGarbage()
    {
        using var held = Lock();
        var pinned = Images();
        foreach (string dir in Directory.EnumerateDirectories(_containers))
        {
            string pin = Path.Combine(dir, "image.json");
            if (File.Exists(pin)) pinned.AddRange(JsonSerializer.Deserialize(File.ReadAllText(pin), ImageJson.Default.ListStoredImage) ?? []);
        }
        var blobs = new HashSet<string>();
        var layers = new HashSet<string>();
        foreach (StoredImage i in pinned)
        {
            blobs.Add(i.Manifest);
            blobs.Add(i.Config);
            foreach (StoredLayer l in i.Layers) { blobs.Add(l.Digest); layers.Add(l.DiffId); }
        }
        int removedBlobs = 0, removedLayers = 0;
        long bytes = 0;
        foreach (Digest d in Blobs.All().ToList())
        {
            if (blobs.Contains(d.ToString())) continue;
            bytes += new FileInfo(Blobs.PathOf(d)).Length;
            Blobs.Delete(d);
            removedBlobs++;
        }
        foreach (string dir in Directory.EnumerateDirectories(_layers).ToList())
        {
            if (layers.Contains("sha256:" + Path.GetFileName(dir))) continue;
            Directory.Delete(dir, recursive: true);
            removedLayers++;
        }
        int temporary = Blobs.CleanTemporary();
        // Partial downloads are kept for resuming, but not forever.
        string downloads = Path.Combine(_root, "downloads");
        if (Directory.Exists(downloads))
        {
            foreach (string f in Directory.EnumerateFiles(downloads))
            {
                if (File.GetLastWriteTimeUtc(f) < DateTime.UtcNow.AddDays(-1)) { File.Delete(f); temporary++; }
            }
        }
        return new GcResult(removedBlobs, removedLayers, temporary, bytes);
    }

    /// <summary>How many images and container roots use each layer (diff id).</summary>
    public Dictionary<string, int> LayerReferences()
    {
        var counts = new Dictionary<string, int>();
        var all = Images();
        foreach (string dir in Directory.EnumerateDirectories(_containers))
        {
            string pin = Path.Combine(dir, "image.json");
            if (File.Exists(pin)) all.AddRange(JsonSerializer.Deserialize(File.ReadAllText(pin), ImageJson.Default.ListStoredImage) ?? []);
        }
        foreach (StoredLayer l in all.SelectMany(i => i.Layers)) counts[l.DiffId] = counts.GetValueOrDefault(l.DiffId) + 1;
        return counts;
    }

    /// <summary>ROOT/lock, held exclusively (flock) while the store changes; waits up to a minute.</summary>
    private IDisposable Lock() => FileLock.Acquire(Path.Combine(_root, "lock"), TimeSpan.FromMinutes(1), $"image store {_root}");
}
