using System.Net;
using System.Net.Http.Headers;
using HostOs.Updater.Payload;

namespace HostOs.Updater.Repository;

/// <summary>
/// A payload as a stream straight from the repository (docs/updates.md): read once, in
/// order, by the applier, so the payload is never on disk. A broken connection, a stall or
/// a short body is resumed where it stopped with an HTTP range request (If-Range on the
/// first response's validator, so a payload replaced on the server meanwhile is a
/// refusal, not a splice of two files), up to a number of attempts. Every byte goes into
/// a SHA-256, and the end is checked against the size and hash the signed index gives:
/// a second check, independent of the payload's own. Without an index (a payload named by
/// hand) the size is the server's. A resumed apply skips what it already has
/// (<see cref="SkipTo"/>, a range request); the whole payload's hash is then not checked,
/// only its operations' and its result's, which the signed manifest names.
/// </summary>
public sealed class ResumingDownload : Stream, ISkippingStream
{
    private readonly HttpClient _http;
    private readonly Uri _uri;
    private readonly UpdateIndex.PayloadRef? _expected;
    private long _size = -1;
    private bool _toldNoRanges;
    private readonly int _attempts;
    private readonly TimeSpan _retryDelay;
    private readonly IndexedPayloadHash _hash;
    private readonly Action<string>? _say;
    private Stream? _body;
    private HttpResponseMessage? _response;
    private EntityTagHeaderValue? _etag;
    private DateTimeOffset? _lastModified;
    private long _position;
    private int _failures;

    public ResumingDownload(HttpClient http, Uri uri, UpdateIndex.PayloadRef? expected, int attempts = 8, TimeSpan? retryDelay = null, Action<string>? say = null)
    {
        _http = http;
        _uri = uri;
        _expected = expected;
        if (expected is not null) _size = expected.Size;
        _hash = new IndexedPayloadHash(uri.ToString(), expected);
        _attempts = attempts;
        _retryDelay = retryDelay ?? TimeSpan.FromSeconds(1);
        _say = say;
    }

    /// <summary>How many times the download was resumed.</summary>
    public int Resumptions { get; private set; }

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        if (_position == _size || buffer.Length == 0) return 0;
        while (true)
        {
            try
            {
                _body ??= Open();
                Span<byte> room = buffer.Length > _size - _position ? buffer[..(int)(_size - _position)] : buffer;
                int n = _body.Read(room);
                if (n == 0) throw new IOException($"the server ended the body at {_position} of {_size} bytes");
                _position += n;
                _hash.Read(room[..n], _position);
                return n;
            }
            catch (Exception e) when (e is IOException or HttpRequestException or TaskCanceledException)
            {
                CloseBody();
                if (++_failures >= _attempts) throw new PayloadException($"{_uri}: download failed at byte {_position} of {_size} after {_failures} attempts: {e.Message}");
                _say?.Invoke($"download interrupted at {_position} of {_size} bytes ({e.Message}); resuming");
                Resumptions++;
                Thread.Sleep(_retryDelay);
            }
        }
    }

    private Stream Open()
    {
        var request = new HttpRequestMessage(HttpMethod.Get, _uri);
        if (_position > 0)
        {
            request.Headers.Range = new RangeHeaderValue(_position, null);
            if (_etag is not null) request.Headers.IfRange = new RangeConditionHeaderValue(_etag);
            else if (_lastModified is DateTimeOffset lm) request.Headers.IfRange = new RangeConditionHeaderValue(lm);
        }
        HttpResponseMessage response = _http.Send(request, HttpCompletionOption.ResponseHeadersRead);
        try
        {
            if (response.StatusCode == HttpStatusCode.NotFound) throw new PayloadException($"{_uri}: not found (404)");
            if (_position == 0)
            {
                if (response.StatusCode != HttpStatusCode.OK) throw new HttpRequestException($"{_uri}: HTTP {(int)response.StatusCode}");
                long? length = response.Content.Headers.ContentLength;
                if (_expected is null)
                {
                    // A payload named by hand: the server's length is what a resumption needs.
                    _size = length ?? throw new PayloadException($"{_uri}: the server does not say how long the payload is");
                }
                else if (length is long l && l != _expected.Size)
                {
                    throw new PayloadException($"{_uri}: the server has {l} bytes, the index says {_expected.Size}");
                }
                _etag = response.Headers.ETag;
                _lastModified = response.Content.Headers.LastModified;
            }
            else if (response.StatusCode == HttpStatusCode.OK)
            {
                // The whole file for a range request: If-Range did not match (the file changed
                // on the server since the first byte), or the server does not do ranges
                // (python's http.server). The first answer's validator and length again say
                // the latter: read past what is already had.
                bool same = (_etag is not null ? Equals(response.Headers.ETag, _etag)
                                               : _lastModified is not null && response.Content.Headers.LastModified == _lastModified)
                            && response.Content.Headers.ContentLength == _size;
                if (!same) throw new PayloadException($"{_uri}: the payload changed on the server during the download");
                Stream whole = response.Content.ReadAsStream();
                byte[] discard = new byte[1 << 16];
                for (long left = _position; left > 0;)
                {
                    int n = whole.Read(discard.AsSpan(0, (int)Math.Min(discard.Length, left)));
                    if (n == 0) throw new IOException($"the server ended the body at {_position - left} of {_size} bytes");
                    left -= n;
                }
                if (!_toldNoRanges) _say?.Invoke($"{_uri}: the server does not answer range requests; read past {_position} bytes instead");
                _toldNoRanges = true;
                _response = response;
                return whole;
            }
            else if (response.StatusCode != HttpStatusCode.PartialContent || response.Content.Headers.ContentRange?.From != _position)
            {
                throw new HttpRequestException($"{_uri}: asked for bytes from {_position}, got HTTP {(int)response.StatusCode} {response.Content.Headers.ContentRange}");
            }
            _response = response;
            return response.Content.ReadAsStream();
        }
        catch
        {
            response.Dispose();
            throw;
        }
    }

    private void CloseBody()
    {
        _body?.Dispose();
        _body = null;
        _response?.Dispose();
        _response = null;
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            CloseBody();
            _hash.Dispose();
        }
        base.Dispose(disposing);
    }

    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => _size;

    /// <summary>Goes on at <paramref name="position"/> with a range request; the whole payload's hash is then not checked.</summary>
    public void SkipTo(long position)
    {
        if (position < _position) throw new ArgumentOutOfRangeException(nameof(position), $"cannot skip back from {_position} to {position}");
        if (position > _size) throw new PayloadException($"{_uri}: the payload ends at byte {_size}, before byte {position} its data goes on at (truncated)");
        if (position == _position) return;
        if (_position == 0) throw new InvalidOperationException("skip only after the first bytes (the head) were read");
        CloseBody();
        _position = position;
        _hash.Skipped();
    }
    public override long Position { get => _position; set => throw new NotSupportedException(); }
    public override void Flush() { }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}

/// <summary>
/// Fetches and verifies a channel's index, and opens the payload to install: over HTTP, or
/// from a repository on local media when <paramref name="server"/> is a <c>file://</c> URL
/// (or an absolute path): the same files, the same checks; no path the index names may
/// lead out of its directory by its text (the media's own symbolic links are followed:
/// what they lead to must still have the size and hash the signed index gives).
/// </summary>
public sealed class UpdateClient(HttpClient http, Uri server, IReadOnlyList<NSec.Cryptography.PublicKey> trusted, Action<string>? say = null)
{
    public UpdateIndex FetchIndex(string channel, DateTimeOffset now)
    {
        byte[] index = Get($"{channel}/index.json");
        byte[] signature = Get($"{channel}/index.json.sig");
        return UpdateIndex.Verify(index, signature, trusted, channel, now);
    }

    /// <summary>The payload as a stream read once, in order (<see cref="ResumingDownload"/> or <see cref="LocalPayload"/>), also an <see cref="ISkippingStream"/>.</summary>
    public Stream Open(UpdateIndex.PayloadRef payload, int attempts = 8, TimeSpan? retryDelay = null) =>
        server.IsFile ? new LocalPayload(LocalPath(payload.Path), payload) : new ResumingDownload(http, new Uri(server, payload.Path), payload, attempts, retryDelay, say);

    /// <summary>Where <paramref name="path"/> (as the index names it) is in a local repository: inside its directory, or refused.</summary>
    private string LocalPath(string path)
    {
        string root = Path.TrimEndingDirectorySeparator(Path.GetFullPath(server.LocalPath)), full = Path.GetFullPath(new Uri(server, path).LocalPath);
        if (!full.StartsWith(root == "/" ? root : root + "/", StringComparison.Ordinal))
        {
            throw new PayloadException($"'{path}' is outside the repository {root}");
        }
        return full;
    }

    private byte[] Get(string path)
    {
        if (server.IsFile) return GetLocal(LocalPath(path));
        var uri = new Uri(server, path);
        using HttpResponseMessage r = http.Send(new HttpRequestMessage(HttpMethod.Get, uri));
        if (!r.IsSuccessStatusCode) throw new PayloadException($"{uri}: HTTP {(int)r.StatusCode}");
        if (r.Content.Headers.ContentLength is > UpdateIndex.MaxBytes) throw new PayloadException($"{uri}: larger than {UpdateIndex.MaxBytes} bytes");
        using Stream s = r.Content.ReadAsStream();
        using var copy = new MemoryStream();
        byte[] buffer = new byte[65536];
        int n;
        while ((n = s.Read(buffer)) > 0)
        {
            copy.Write(buffer, 0, n);
            if (copy.Length > UpdateIndex.MaxBytes) throw new PayloadException($"{uri}: larger than {UpdateIndex.MaxBytes} bytes");
        }
        return copy.ToArray();
    }

    private static byte[] GetLocal(string path)
    {
        using FileStream file = LocalPayload.OpenFile(path);
        if (file.Length > UpdateIndex.MaxBytes) throw new PayloadException($"{path}: larger than {UpdateIndex.MaxBytes} bytes");
        byte[] bytes = new byte[file.Length];
        file.ReadExactly(bytes);
        return bytes;
    }
}
