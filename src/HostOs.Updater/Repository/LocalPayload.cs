using HostOs.Updater.Payload;

namespace HostOs.Updater.Repository;

/// <summary>
/// A payload in a repository on local media (a USB stick, a mounted disk or image, a
/// network share: a <c>file://</c> server, for machines without a network path to an HTTP
/// mirror). Read once, in order, as a download is: a file that is not the size the signed
/// index says is refused before a byte of it is used, every byte goes into the index's
/// SHA-256 (<see cref="IndexedPayloadHash"/>), and a resumed apply goes on further along
/// by seeking, never back.
/// </summary>
public sealed class LocalPayload : Stream, ISkippingStream
{
    private readonly FileStream _file;
    private readonly IndexedPayloadHash _hash;
    private readonly string _path;
    private readonly long _size;

    public LocalPayload(string path, UpdateIndex.PayloadRef expected)
    {
        _path = path;
        _file = OpenFile(path);
        if (_file.Length != expected.Size)
        {
            long length = _file.Length;
            _file.Dispose();
            throw new PayloadException($"{path}: {length} bytes, the index says {expected.Size}");
        }
        _size = expected.Size;
        _hash = new IndexedPayloadHash(path, expected);
    }

    /// <summary>A repository's file, opened only when it is a regular file (a FIFO would block its reader forever).</summary>
    internal static FileStream OpenFile(string path)
    {
        if (!File.Exists(path)) throw new PayloadException($"{path}: not found in the repository");
        if (!HostOs.Platform.Interop.Sys.IsRegularFile(path)) throw new PayloadException($"{path}: not a regular file");
        return new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
    }

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        // Never past the size the index gives, even if the file grew since it was opened.
        if (buffer.Length > _size - _file.Position) buffer = buffer[..(int)Math.Max(0, _size - _file.Position)];
        if (buffer.IsEmpty) return 0;
        int n = _file.Read(buffer);
        if (n == 0) throw new PayloadException($"{_path}: ends at byte {_file.Position}, the index says {_size} (the file shrank while it was read)");
        _hash.Read(buffer[..n], _file.Position);
        return n;
    }

    /// <summary>Goes on at <paramref name="position"/>; the whole payload's hash is then not checked.</summary>
    public void SkipTo(long position)
    {
        if (position < _file.Position) throw new ArgumentOutOfRangeException(nameof(position), $"cannot skip back from {_file.Position} to {position}");
        if (position > _size) throw new PayloadException($"{_path}: the payload ends at byte {_size}, before byte {position} its data goes on at (truncated)");
        if (position == _file.Position) return;
        _hash.Skipped();
        _file.Position = position;
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _file.Dispose();
            _hash.Dispose();
        }
        base.Dispose(disposing);
    }

    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => _size;
    public override long Position { get => _file.Position; set => throw new NotSupportedException(); }
    public override void Flush() { }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}
