using System.Text;
using HostOs.Images;
using HostOs.Platform.Interop;

namespace HostOs.UnitTests.Images;

public class TarReaderTests
{
    [Fact]
    public void ReadsUstarPaxLongNamesAndBinaryXattrs()
    {
        string longName = "deep/" + new string('d', 120) + "/file";
        byte[] capability = [0x01, 0x00, 0x00, 0x02, 0x80, 0x20, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]; // 0x80: not UTF-8
        byte[] tar = new TestTar()
            .File("a.txt", "hello", mode: 0x9ED /* 04755 */, uid: 1000, gid: 100)
            .File(longName, "x", xattrs: new() { ["security.capability"] = capability })
            .Symlink("link", "/etc/passwd")
            .Build();
        var reader = new TarReader(new MemoryStream(tar), "test");
        TarEntry a = reader.Next()!;
        Assert.Equal(("a.txt", '0', 0x9EDu, 1000L, 100L, 5L), (a.Name, a.Type, a.Mode, a.Uid, a.Gid, a.Size));
        Assert.Equal("hello", new StreamReader(reader.Data).ReadToEnd());
        TarEntry b = reader.Next()!; // a.txt's data was read; the long one's is skipped below
        Assert.Equal(longName, b.Name);
        Assert.Equal(capability, b.Xattrs["security.capability"]);
        TarEntry c = reader.Next()!;
        Assert.Equal(('2', "/etc/passwd"), (c.Type, c.LinkName));
        Assert.Null(reader.Next());
    }

    [Fact]
    public void CorruptAndTruncatedArchivesAreErrors()
    {
        byte[] tar = new TestTar().File("a", "content").Build();
        tar[10] ^= 0xFF; // inside the name: the checksum no longer holds
        Assert.Contains("checksum mismatch", Assert.Throws<ImageException>(() => new TarReader(new MemoryStream(tar), "t").Next()).Message);

        byte[] whole = new TestTar().File("a", new string('x', 2000)).Build();
        var reader = new TarReader(new MemoryStream(whole[..1000]), "t");
        reader.Next();
        Assert.Contains("truncated", Assert.Throws<ImageException>(() => reader.Data.CopyTo(Stream.Null)).Message);
        Assert.Contains("sparse", Assert.Throws<ImageException>(() => new TarReader(new MemoryStream(new TestTar().Entry("s", 'S').Build()), "t").Next()).Message);
    }
}

/// <summary>Unpacking as an overlayfs layer; root is needed for owners, device nodes and trusted.* xattrs.</summary>
public class LayerUnpackerTests : IDisposable
{
    private readonly string _work = Directory.CreateTempSubdirectory("unpack-").FullName;
    private string Layer => Path.Combine(_work, "layer");

    public void Dispose() => Directory.Delete(_work, recursive: true);

    private UnpackStats Unpack(TestTar tar, UnpackPolicy? policy = null) =>
        LayerUnpacker.Unpack(new MemoryStream(tar.Build()), Layer, policy ?? new UnpackPolicy(), "layer test");

    [RootFact]
    public void FilesLinksOwnersModesTimesAndCapabilities()
    {
        byte[] cap = [0x01, 0x00, 0x00, 0x02, 0x80, 0x20, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]; // CAP_SETUID, CAP_NET_RAW
        Unpack(new TestTar()
            .Dir("usr/", mode: 0x1ED)
            .File("usr/bin/tool", "#!/bin/sh\n", mode: 0x9ED, uid: 0, gid: 0, xattrs: new() { ["security.capability"] = cap, ["user.note"] = "hi"u8.ToArray() })
            .File("home/u/file", "data", mode: 0x180, uid: 1000, gid: 1000)
            .HardLink("home/u/same", "home/u/file")
            .Symlink("usr/bin/sh", "/bin/busybox")
            .Fifo("run/pipe"));
        string tool = Path.Combine(Layer, "usr/bin/tool");
        Assert.Equal(cap, Sys.GetXattr(tool, "security.capability"));
        Assert.Equal("hi"u8.ToArray(), Sys.GetXattr(tool, "user.note"));
        Assert.True(File.GetUnixFileMode(tool).HasFlag(UnixFileMode.SetUser));
        Assert.Equal(new DateTime(2023, 11, 14, 22, 13, 20, DateTimeKind.Utc), File.GetLastWriteTimeUtc(tool));
        var file = FileStat.Of(Path.Combine(Layer, "home/u/file"));
        Assert.Equal((1000, 1000, 2), (file.Uid, file.Gid, file.Links));
        Assert.Equal("fifo", FileStat.Of(Path.Combine(Layer, "run/pipe")).Type);
        Assert.Equal("/bin/busybox", new FileInfo(Path.Combine(Layer, "usr/bin/sh")).LinkTarget);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(Layer, "home/u/file")));
    }

    [RootFact]
    public void WhiteoutsBecomeOverlayWhiteouts()
    {
        UnpackStats s = Unpack(new TestTar().File("etc/.wh.motd", "").Dir("var/cache/").File("var/cache/.wh..wh..opq", "").File("var/cache/new", "n"));
        Assert.Equal((1, 1), (s.Whiteouts, s.OpaqueDirectories));
        var whiteout = FileStat.Of(Path.Combine(Layer, "etc/motd"));
        Assert.Equal(("character special file", "0:0"), (whiteout.Type, whiteout.Device));
        Assert.Equal("y"u8.ToArray(), Sys.GetXattr(Path.Combine(Layer, "var/cache"), "trusted.overlay.opaque"));
        Assert.False(File.Exists(Path.Combine(Layer, "var/cache/.wh..wh..opq")));
    }

    [Fact]
    public void DotDotIsRefused()
    {
        var e = Assert.Throws<ImageException>(() => Unpack(new TestTar().File("../escaped", "x")));
        Assert.Contains("'..' would leave the layer", e.Message);
        Assert.False(File.Exists(Path.Combine(_work, "escaped")));
        Assert.Throws<ImageException>(() => Unpack(new TestTar().File("a", "x").HardLink("b", "a/../../../etc/passwd")));
    }

    [RootFact]
    public void AbsoluteNamesStayInside()
    {
        Unpack(new TestTar().File("/etc/hostname", "inside"));
        Assert.Equal("inside", File.ReadAllText(Path.Combine(Layer, "etc/hostname")));
    }

    [Fact]
    public void NothingIsWrittenThroughASymlink()
    {
        string host = Directory.CreateDirectory(Path.Combine(_work, "host-etc")).FullName;
        var e = Assert.Throws<ImageException>(() => Unpack(new TestTar().Symlink("etc", host).File("etc/passwd", "root::0:0")));
        Assert.Contains("'etc' is a symbolic link", e.Message);
        Assert.False(File.Exists(Path.Combine(host, "passwd")));
        // Relative escapes, and hard links through a link, the same.
        Assert.Throws<ImageException>(() => Unpack(new TestTar().Symlink("up", "../../..").File("up/x", "x")));
        Assert.Throws<ImageException>(() => Unpack(new TestTar().Symlink("t", host).HardLink("stolen", "t/secret")));
    }

    [RootFact]
    public void AFileReplacesASymlinkInsteadOfWritingThroughIt()
    {
        string hostFile = Path.Combine(_work, "host-shadow");
        File.WriteAllText(hostFile, "host secret");
        Unpack(new TestTar().Symlink("etc/shadow", hostFile).File("etc/shadow", "layer's own"));
        Assert.Equal("host secret", File.ReadAllText(hostFile));
        Assert.Null(new FileInfo(Path.Combine(Layer, "etc/shadow")).LinkTarget);
        Assert.Equal("layer's own", File.ReadAllText(Path.Combine(Layer, "etc/shadow")));
    }

    [RootFact]
    public void ADirectoryReplacedByASymlinkDoesNotPassItsAttributesToTheTarget()
    {
        // The directory's mode/owner are applied at the end; by then "x" and "a" are links
        // to host paths. Neither host path may change.
        string hostFile = Path.Combine(_work, "host-binary");
        File.WriteAllText(hostFile, "x");
        File.SetUnixFileMode(hostFile, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        string hostDir = Directory.CreateDirectory(Path.Combine(_work, "host-etc")).FullName;
        File.WriteAllText(Path.Combine(hostDir, "shadow"), "secret");
        File.SetUnixFileMode(Path.Combine(hostDir, "shadow"), UnixFileMode.UserRead);
        Unpack(new TestTar()
            .Dir("x/", mode: 0xDFF /* 06777 */)
            .Symlink("x", hostFile)
            .Entry("a/shadow/", '5', mode: 0x1B6, uid: 1000)
            .Symlink("a", hostDir));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(hostFile));
        Assert.Equal(UnixFileMode.UserRead, File.GetUnixFileMode(Path.Combine(hostDir, "shadow")));
        Assert.Equal(0, FileStat.Of(Path.Combine(hostDir, "shadow")).Uid);
    }

    [RootFact]
    public void DeviceNodesOnlyWhenAllowed()
    {
        var e = Assert.Throws<ImageException>(() => Unpack(new TestTar().Device("dev/sda", '4', 8, 0)));
        Assert.Contains("block device 8:0; device nodes are not allowed", e.Message);
        Directory.Delete(Layer, true);
        Unpack(new TestTar().Device("dev/null", '3', 1, 3), new UnpackPolicy { AllowDeviceNodes = true });
        Assert.Equal(("character special file", "1:3"), (FileStat.Of(Path.Combine(Layer, "dev/null")).Type, FileStat.Of(Path.Combine(Layer, "dev/null")).Device));
    }

    [RootFact]
    public void OverlayXattrsFromALayerAreRefused()
    {
        var e = Assert.Throws<ImageException>(() => Unpack(new TestTar().File("x", "x", xattrs: new() { ["trusted.overlay.redirect"] = "/etc"u8.ToArray() })));
        Assert.Contains("trusted.overlay.redirect would steer overlayfs", e.Message);
    }
}

/// <summary>stat(1) of a path, for what .NET does not expose (owner, links, device numbers).</summary>
internal sealed record FileStat(int Uid, int Gid, int Links, string Type, string Device)
{
    public static FileStat Of(string path)
    {
        var p = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("stat", ["-c", "%u|%g|%h|%F|%Hr:%Lr", path]) { RedirectStandardOutput = true })!;
        string[] f = p.StandardOutput.ReadToEnd().Trim().Split('|');
        p.WaitForExit();
        return new FileStat(int.Parse(f[0]), int.Parse(f[1]), int.Parse(f[2]), f[3], f[4]);
    }
}
