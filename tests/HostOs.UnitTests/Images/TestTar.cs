using System.Text;

namespace HostOs.UnitTests.Images;

/// <summary>
/// Writes tar archives byte by byte (ustar headers, PAX records with raw values), so tests
/// can build exactly the hostile or unusual entries a reader must cope with.
/// </summary>
internal sealed class TestTar
{
    private readonly MemoryStream _out = new();

    public TestTar File(string name, string content, int mode = 0x1A4, int uid = 0, int gid = 0, Dictionary<string, byte[]>? xattrs = null) =>
        Entry(name, '0', Encoding.UTF8.GetBytes(content), mode: mode, uid: uid, gid: gid, xattrs: xattrs);

    public TestTar Dir(string name, int mode = 0x1ED) => Entry(name, '5', mode: mode);
    public TestTar Symlink(string name, string target) => Entry(name, '2', link: target, mode: 0x1FF);
    public TestTar HardLink(string name, string target) => Entry(name, '1', link: target);
    public TestTar Device(string name, char type, int major, int minor) => Entry(name, type, major: major, minor: minor);
    public TestTar Fifo(string name) => Entry(name, '6');

    public TestTar Entry(string name, char type, byte[]? data = null, string link = "", int mode = 0x1A4, int uid = 0, int gid = 0,
        int major = 0, int minor = 0, Dictionary<string, byte[]>? xattrs = null, long mtime = 1_700_000_000)
    {
        data ??= [];
        if (xattrs is { Count: > 0 } || name.Length > 99 || link.Length > 99)
        {
            var pax = new MemoryStream();
            void Record(string key, byte[] value)
            {
                byte[] body = [.. Encoding.UTF8.GetBytes($" {key}="), .. value, (byte)'\n'];
                int length = body.Length + 1;
                while ((length.ToString().Length + body.Length) != length) length = length.ToString().Length + body.Length;
                pax.Write(Encoding.ASCII.GetBytes(length.ToString()));
                pax.Write(body);
            }
            if (name.Length > 99) Record("path", Encoding.UTF8.GetBytes(name));
            if (link.Length > 99) Record("linkpath", Encoding.UTF8.GetBytes(link));
            foreach (var (k, v) in xattrs ?? []) Record("SCHILY.xattr." + k, v);
            Header("PaxHeader", 'x', pax.Length, "", 0x1A4, 0, 0, 0, 0, mtime);
            _out.Write(pax.ToArray());
            Pad(pax.Length);
        }
        Header(name.Length > 99 ? name[..99] : name, type, data.Length, link.Length > 99 ? link[..99] : link, mode, uid, gid, major, minor, mtime);
        _out.Write(data);
        Pad(data.Length);
        return this;
    }

    /// <summary>A raw header, for corrupt-archive tests.</summary>
    public TestTar Raw(byte[] bytes)
    {
        _out.Write(bytes);
        return this;
    }

    public byte[] Build(bool endMarker = true)
    {
        if (endMarker) _out.Write(new byte[1024]);
        return _out.ToArray();
    }

    private void Header(string name, char type, long size, string link, int mode, int uid, int gid, int major, int minor, long mtime)
    {
        byte[] h = new byte[512];
        void Put(int offset, string s) => Encoding.UTF8.GetBytes(s).CopyTo(h, offset);
        void Octal(int offset, int width, long v) => Put(offset, Convert.ToString(v, 8).PadLeft(width - 1, '0'));
        Put(0, name);
        Octal(100, 8, mode);
        Octal(108, 8, uid);
        Octal(116, 8, gid);
        Octal(124, 12, size);
        Octal(136, 12, mtime);
        h[156] = (byte)type;
        Put(157, link);
        Put(257, "ustar\0");
        Put(263, "00");
        Octal(329, 8, major);
        Octal(337, 8, minor);
        for (int i = 148; i < 156; i++) h[i] = (byte)' ';
        long sum = h.Sum(b => (long)b);
        Put(148, Convert.ToString(sum, 8).PadLeft(6, '0') + "\0 ");
        _out.Write(h);
    }

    private void Pad(long size)
    {
        long pad = (512 - size % 512) % 512;
        _out.Write(new byte[pad]);
    }
}
