using System.Security.Cryptography;
using HostOs.Platform.Interop;

namespace HostOs.Images;

/// <summary>
/// Content-addressed blobs under ROOT/blobs/sha256/HEX. A blob is written to ROOT/tmp,
/// hashed while it is written, checked against the digest (and size) it was announced
/// with, fsync'ed, then renamed into place and the directory fsync'ed: a crash at any
/// moment leaves either no blob or a whole one, never half of one under its name. Reads
/// are checked too (<see cref="Open"/> hashes as it goes and fails at the end on a
/// mismatch): a disk that rotted a blob is caught before its content is used.
/// </summary>
public sealed class BlobStore
{
    private readonly string _dir, _tmp;

    public BlobStore(string root)
    {
        _dir = Path.Combine(root, "blobs", "sha256");
        _tmp = Path.Combine(root, "tmp");
        Directory.CreateDirectory(_dir);
        Directory.CreateDirectory(_tmp);
    }

    public string PathOf(Digest digest) => Path.Combine(_dir, digest.Hex);
    public bool Has(Digest digest) => File.Exists(PathOf(digest));

    public IEnumerable<Digest> All() =>
        Directory.EnumerateFiles(_dir).Select(Path.GetFileName).Where(n => n!.Length == 64).Select(n => new Digest(n!));

    /// <summary>
    /// Stores <paramref name="content"/>; with <paramref name="expected"/>, it must hash to
    /// it (and have <paramref name="expectedSize"/> bytes when given) or nothing is stored.
    /// </summary>
    public Digest Put(Stream content, Digest? expected, long? expectedSize, string what)
    {
        if (expected is Digest e && Has(e)) return e;
        string temp = Path.Combine(_tmp, "blob-" + Guid.NewGuid().ToString("N"));
        try
        {
            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            long size = 0;
            using (var file = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
            {
                byte[] buffer = new byte[1 << 16];
                int n;
                while ((n = content.Read(buffer)) > 0)
                {
                    size += n;
                    if (expectedSize is long max && size > max) throw new ImageException($"{what}: more than the announced {max} bytes");
                    hash.AppendData(buffer, 0, n);
                    file.Write(buffer, 0, n);
                }
                file.Flush(flushToDisk: true);
            }
            Digest actual = Digest.FromHash(hash.GetHashAndReset());
            if (expectedSize is long announced && size != announced) throw new ImageException($"{what}: {size} bytes, announced {announced}");
            if (expected is Digest want && want != actual) throw new ImageException($"{what}: content hashes to {actual}, not the announced {want}");
            File.Move(temp, PathOf(actual), overwrite: true);
            Sys.FsyncDirectory(_dir);
            return actual;
        }
        finally
        {
            File.Delete(temp);
        }
    }

    /// <summary>
    /// Takes a finished download (a file on the same file system, e.g. ROOT/downloads): it is
    /// hashed whole, and renamed into place only if it is the blob announced; otherwise it
    /// is deleted (it cannot be resumed into anything valid) and the error names both digests.
    /// </summary>
    public void Adopt(string file, Digest expected, long expectedSize, string what)
    {
        long size = new FileInfo(file).Length;
        Digest actual;
        using (var stream = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16))
        {
            actual = Digest.FromHash(SHA256.HashData(stream));
        }
        if (actual != expected || size != expectedSize)
        {
            File.Delete(file);
            throw new ImageException($"{what}: downloaded {size} bytes hashing to {actual}, not the announced {expected} ({expectedSize} bytes)");
        }
        using (var handle = File.OpenHandle(file, FileMode.Open, FileAccess.ReadWrite)) Sys.Fsync(handle, file);
        File.Move(file, PathOf(expected), overwrite: true);
        Sys.FsyncDirectory(_dir);
    }

    public Digest Put(byte[] content, Digest? expected, string what) => Put(new MemoryStream(content), expected, content.Length, what);

    /// <summary>A blob's content, checked against its digest as it is read (the mismatch is thrown at its end).</summary>
    public Stream Open(Digest digest)
    {
        string path = PathOf(digest);
        if (!File.Exists(path)) throw new ImageException($"blob {digest} is not in the store");
        return new VerifyingStream(new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16), digest, -1, $"blob {digest}");
    }

    /// <summary>A small document (manifest, config), whole and checked.</summary>
    public byte[] ReadAll(Digest digest, long maxSize)
    {
        string path = PathOf(digest);
        if (!File.Exists(path)) throw new ImageException($"blob {digest} is not in the store");
        long length = new FileInfo(path).Length;
        if (length > maxSize) throw new ImageException($"blob {digest}: {length} bytes, more than the {maxSize} a document may have");
        byte[] data = File.ReadAllBytes(path);
        Digest actual = Digest.Of(data);
        if (actual != digest) throw new ImageException($"blob {digest} is corrupt in the store: its content hashes to {actual}");
        return data;
    }

    public void Delete(Digest digest) => File.Delete(PathOf(digest));

    /// <summary>Leftovers of interrupted writes (only ever under tmp/).</summary>
    public int CleanTemporary()
    {
        int n = 0;
        foreach (string f in Directory.EnumerateFileSystemEntries(_tmp))
        {
            if (Directory.Exists(f)) Directory.Delete(f, true); else File.Delete(f);
            n++;
        }
        return n;
    }
}

/// <summary>
/// Passes a stream through while hashing it; at its end the hash (and length, when known)
/// must match, or reading fails with an error naming the blob. Nothing read from it may be
/// trusted before its end has been reached.
/// </summary>
public sealed class VerifyingStream(Stream inner, Digest expected, long expectedLength, string what) : ReadOnlyStream
{
    private readonly IncrementalHash _hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
    private long _read;
    private bool _verified;

    public override int Read(Span<byte> buffer)
    {
        int n = inner.Read(buffer);
        if (n > 0)
        {
            _hash.AppendData(buffer[..n]);
            _read += n;
            if (expectedLength >= 0 && _read > expectedLength) throw new ImageException($"{what}: more than the announced {expectedLength} bytes");
            return n;
        }
        if (!_verified && buffer.Length > 0)
        {
            Digest actual = Digest.FromHash(_hash.GetHashAndReset());
            if (expectedLength >= 0 && _read != expectedLength) throw new ImageException($"{what}: {_read} bytes, announced {expectedLength}");
            if (actual != expected) throw new ImageException($"{what}: content hashes to {actual}, not {expected}");
            _verified = true;
        }
        return 0;
    }

    /// <summary>Reads to the end, so the check runs even if the consumer stopped early.</summary>
    public void VerifyToEnd()
    {
        byte[] buffer = new byte[1 << 16];
        while (Read(buffer) > 0) { }
    }

    public override long Position { get => _read; set => throw new NotSupportedException(); }

    protected override void Dispose(bool disposing)
    {
        if (disposing) { inner.Dispose(); _hash.Dispose(); }
        base.Dispose(disposing);
    }
}

/// <summary>Hashes what passes through (a layer's uncompressed tar: its diff id).</summary>
public sealed class HashingStream(Stream inner) : ReadOnlyStream
{
    private readonly IncrementalHash _hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);

    public Digest Digest() => HostOs.Images.Digest.FromHash(_hash.GetHashAndReset());

    public override int Read(Span<byte> buffer)
    {
        int n = inner.Read(buffer);
        if (n > 0) _hash.AppendData(buffer[..n]);
        return n;
    }

    public void DrainToEnd()
    {
        byte[] buffer = new byte[1 << 16];
        while (Read(buffer) > 0) { }
    }


    protected override void Dispose(bool disposing)
    {
        if (disposing) { inner.Dispose(); _hash.Dispose(); }
        base.Dispose(disposing);
    }
}
