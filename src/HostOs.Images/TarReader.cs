using System.Text;

namespace HostOs.Images;

/// <summary>One entry of a tar stream, with PAX and GNU extensions already applied.</summary>
public sealed class TarEntry
{
    public required string Name { get; init; }
    /// <summary>The typeflag: '0' file, '1' hard link, '2' symlink, '3' char, '4' block, '5' dir, '6' fifo.</summary>
    public char Type { get; init; }
    public uint Mode { get; init; }
    public long Uid { get; init; }
    public long Gid { get; init; }
    public long Size { get; init; }
    public DateTimeOffset ModificationTime { get; init; }
    public string LinkName { get; init; } = "";
    public long DeviceMajor { get; init; }
    public long DeviceMinor { get; init; }
    /// <summary>Extended attributes as raw bytes (PAX SCHILY.xattr.*, LIBARCHIVE.xattr.*).</summary>
    public Dictionary<string, byte[]> Xattrs { get; init; } = [];
    /// <summary>Where the entry's data starts in the underlying stream (for indexing a seekable archive).</summary>
    public long DataOffset { get; init; }
}

/// <summary>
/// A tar reader of our own (POSIX ustar, PAX, GNU long names; base-256 numbers), because
/// image layers carry binary xattr values in PAX records (security.capability), which
/// System.Formats.Tar decodes as UTF-8 strings and so corrupts. Every malformed header is
/// an error naming the entry; GNU sparse files are refused. Reads forward only: the data
/// of the current entry is <see cref="Data"/>, and whatever is left of it is skipped by
/// the next <see cref="Next"/>.
/// </summary>
public sealed class TarReader(Stream stream, string what)
{
    private const int Block = 512;
    private readonly Stream _stream = stream;
    private readonly byte[] _header = new byte[Block];
    private long _remaining, _padding, _position;
    private readonly Dictionary<string, byte[]> _global = [];

    /// <summary>The current entry's content (only its own bytes).</summary>
    public Stream Data { get; private set; } = Stream.Null;

    /// <summary>Bytes consumed from the stream so far.</summary>
    public long Position => _position;

    public TarEntry? Next()
    {
        Skip(_remaining + _padding);
        _remaining = _padding = 0;
        Dictionary<string, byte[]> pax = new(_global);
        string? longName = null, longLink = null;
        while (true)
        {
            if (!ReadBlock()) return null; // EOF without the end marker: accepted, as GNU tar does
            if (_header.AsSpan().IndexOfAnyExcept((byte)0) < 0)
            {
                return null; // end-of-archive marker
            }
            VerifyChecksum();
            char type = (char)_header[156];
            long size = Number(124, 12, "size");
            if (size < 0) throw Error($"negative size {size}");
            switch (type)
            {
                case 'x':
                    foreach (var (k, v) in ParsePax(ReadPayload(size, "PAX header"))) pax[k] = v;
                    continue;
                case 'g':
                    foreach (var (k, v) in ParsePax(ReadPayload(size, "PAX global header"))) { _global[k] = v; pax[k] = v; }
                    continue;
                case 'L':
                    longName = CString(ReadPayload(size, "GNU long name"));
                    continue;
                case 'K':
                    longLink = CString(ReadPayload(size, "GNU long link name"));
                    continue;
                case 'S':
                    throw Error("GNU sparse files are not supported in image layers");
            }
            if (pax.Keys.Any(k => k.StartsWith("GNU.sparse.", StringComparison.Ordinal))) throw Error("PAX sparse files are not supported in image layers");

            string name = longName ?? Pax(pax, "path") ?? HeaderName();
            string link = longLink ?? Pax(pax, "linkpath") ?? Field(157, 100);
            if (Pax(pax, "size") is string paxSize) size = ParseLong(paxSize, "PAX size");
            var entry = new TarEntry
            {
                Name = name,
                Type = type == '\0' || type == '7' ? '0' : type,
                Mode = (uint)Number(100, 8, "mode"),
                Uid = Pax(pax, "uid") is string u ? ParseLong(u, "PAX uid") : Number(108, 8, "uid"),
                Gid = Pax(pax, "gid") is string g ? ParseLong(g, "PAX gid") : Number(116, 8, "gid"),
                Size = type is '0' or '\0' or '7' ? size : 0,
                ModificationTime = Pax(pax, "mtime") is string mt ? PaxTime(mt) : DateTimeOffset.FromUnixTimeSeconds(Math.Clamp(Number(136, 12, "mtime"), -62135596800L, 253402300799L)),
                LinkName = link,
                DeviceMajor = type is '3' or '4' ? Number(329, 8, "devmajor") : 0,
                DeviceMinor = type is '3' or '4' ? Number(337, 8, "devminor") : 0,
                Xattrs = Xattrs(pax),
                DataOffset = _position,
            };
            if (entry.Type is not ('0' or '1' or '2' or '3' or '4' or '5' or '6'))
            {
                throw Error($"entry '{name}': type '{type}' is not a file, link, directory, device or fifo");
            }
            // Only regular files have data; a size on anything else is skipped.
            _remaining = size;
            _padding = (Block - size % Block) % Block;
            // Data of other types (rare) is skipped by the next call.
            Data = entry.Type == '0' ? new EntryStream(this, size) : Stream.Null;
            return entry;
        }
    }

    private bool ReadBlock()
    {
        int n = ReadFully(_header);
        if (n == 0) return false;
        if (n < Block) throw Error($"truncated header ({n} of 512 bytes) at offset {_position - n}");
        return true;
    }

    private int ReadFully(Span<byte> buffer)
    {
        int total = 0;
        while (total < buffer.Length)
        {
            int n = _stream.Read(buffer[total..]);
            if (n == 0) break;
            total += n;
        }
        _position += total;
        return total;
    }

    private void Skip(long count)
    {
        if (count == 0) return;
        if (_stream.CanSeek)
        {
            _stream.Seek(count, SeekOrigin.Current);
            _position += count;
            return;
        }
        byte[] buffer = new byte[Math.Min(count, 65536)];
        while (count > 0)
        {
            int n = ReadFully(buffer.AsSpan(0, (int)Math.Min(count, buffer.Length)));
            if (n == 0) throw Error("truncated: the archive ends inside an entry");
            count -= n;
        }
    }

    private byte[] ReadPayload(long size, string kind)
    {
        if (size > 1 << 20) throw Error($"{kind} of {size} bytes (at most 1 MiB)");
        byte[] data = new byte[size];
        if (ReadFully(data) < size) throw Error($"truncated {kind}");
        Skip((Block - size % Block) % Block);
        return data;
    }

    private void VerifyChecksum()
    {
        long stored = Number(148, 8, "checksum");
        long sum = 0;
        for (int i = 0; i < Block; i++) sum += i is >= 148 and < 156 ? (byte)' ' : _header[i];
        if (sum != stored) throw Error($"header checksum mismatch at offset {_position - Block} (not a tar archive, or corrupt)");
    }

    private string HeaderName()
    {
        string name = Field(0, 100);
        // ustar's prefix field (not GNU's layout, which uses those bytes otherwise).
        bool ustar = _header.AsSpan(257, 6).SequenceEqual("ustar\0"u8);
        string prefix = ustar ? Field(345, 155) : "";
        return prefix.Length > 0 ? prefix + "/" + name : name;
    }

    private string Field(int offset, int length) => CString(_header.AsSpan(offset, length));

    private static string CString(ReadOnlySpan<byte> bytes)
    {
        int end = bytes.IndexOf((byte)0);
        return Encoding.UTF8.GetString(end < 0 ? bytes : bytes[..end]);
    }

    /// <summary>Octal ASCII (space or NUL terminated), or GNU base-256 when the top bit is set.</summary>
    private long Number(int offset, int length, string field)
    {
        ReadOnlySpan<byte> f = _header.AsSpan(offset, length);
        if ((f[0] & 0x80) != 0)
        {
            if ((f[0] & 0x40) != 0) throw Error($"negative base-256 {field}");
            long v = f[0] & 0x3F;
            for (int i = 1; i < f.Length; i++)
            {
                if (v > (long.MaxValue >> 8)) throw Error($"{field} overflows");
                v = (v << 8) | f[i];
            }
            return v;
        }
        long value = 0;
        bool digits = false;
        foreach (byte b in f)
        {
            if (b is (byte)' ' or 0)
            {
                if (digits) break;
                continue;
            }
            if (b is < (byte)'0' or > (byte)'7') throw Error($"{field} field is not octal");
            if (value > (long.MaxValue >> 3)) throw Error($"{field} overflows");
            value = (value << 3) | (uint)(b - '0');
            digits = true;
        }
        return value;
    }

    /// <summary>"LEN key=value\n" records; values are raw bytes (xattrs may be binary).</summary>
    private Dictionary<string, byte[]> ParsePax(byte[] data)
    {
        var records = new Dictionary<string, byte[]>();
        int i = 0;
        while (i < data.Length)
        {
            int space = Array.IndexOf(data, (byte)' ', i);
            if (space < 0) throw Error("malformed PAX record (no length)");
            if (!int.TryParse(Encoding.ASCII.GetString(data, i, space - i), out int length) || length <= 0 || i + length > data.Length)
            {
                throw Error("malformed PAX record length");
            }
            int eq = Array.IndexOf(data, (byte)'=', space + 1, i + length - space - 1);
            if (eq < 0 || data[i + length - 1] != (byte)'\n') throw Error("malformed PAX record");
            string key = Encoding.UTF8.GetString(data, space + 1, eq - space - 1);
            records[key] = data.AsSpan(eq + 1, i + length - 1 - eq - 1).ToArray();
            i += length;
        }
        return records;
    }

    private static string? Pax(Dictionary<string, byte[]> pax, string key) =>
        pax.TryGetValue(key, out byte[]? v) ? Encoding.UTF8.GetString(v) : null;

    private Dictionary<string, byte[]> Xattrs(Dictionary<string, byte[]> pax)
    {
        var x = new Dictionary<string, byte[]>();
        foreach (var (key, value) in pax)
        {
            if (key.StartsWith("SCHILY.xattr.", StringComparison.Ordinal)) x[key["SCHILY.xattr.".Length..]] = value;
            else if (key.StartsWith("LIBARCHIVE.xattr.", StringComparison.Ordinal))
            {
                // libarchive: URL-encoded name, base64 value.
                try { x[Uri.UnescapeDataString(key["LIBARCHIVE.xattr.".Length..])] = Convert.FromBase64String(Encoding.ASCII.GetString(value)); }
                catch (FormatException) { throw Error($"PAX record {key}: value is not base64"); }
            }
        }
        return x;
    }

    private long ParseLong(string text, string field) =>
        long.TryParse(text, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out long v) && v >= 0
            ? v : throw Error($"{field} '{text}' is not a number");

    private DateTimeOffset PaxTime(string text)
    {
        string seconds = text.Split('.')[0];
        if (!long.TryParse(seconds, System.Globalization.NumberStyles.AllowLeadingSign, System.Globalization.CultureInfo.InvariantCulture, out long s))
        {
            throw Error($"PAX mtime '{text}' is not a time");
        }
        return DateTimeOffset.FromUnixTimeSeconds(Math.Clamp(s, -62135596800L, 253402300799L));
    }

    private ImageException Error(string message) => new($"{what}: {message}");

    /// <summary>The current entry's bytes; reading it advances the archive.</summary>
    private sealed class EntryStream(TarReader reader, long length) : ReadOnlyStream
    {
        public override long Length => length;
        public override long Position { get => length - reader._remaining; set => throw new NotSupportedException(); }

        public override int Read(Span<byte> buffer)
        {
            if (reader._remaining == 0 || buffer.Length == 0) return 0;
            int want = (int)Math.Min(buffer.Length, reader._remaining);
            int n = reader._stream.Read(buffer[..want]);
            if (n == 0) throw reader.Error("truncated: the archive ends inside an entry");
            reader._remaining -= n;
            reader._position += n;
            return n;
        }

    }
}
