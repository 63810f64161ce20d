using HostOs.ImageBuilder;

namespace HostOs.UnitTests.ImageBuilder;

public class ImageDefinitionTests
{
    private static string RepoFile(string relative)
    {
        for (string? d = AppContext.BaseDirectory; d is not null; d = Path.GetDirectoryName(d))
        {
            if (File.Exists(Path.Combine(d, "HostOs.sln"))) return Path.Combine(d, relative);
        }
        throw new InvalidOperationException("repository root not found");
    }

    private static string Write(string json)
    {
        string path = Path.Combine(Directory.CreateTempSubdirectory("imgdef-").FullName, "image.json");
        File.WriteAllText(path, json);
        return path;
    }

    [Theory]
    [InlineData("image/hostos.json")]
    [InlineData("qemu-tests/image/hostos-test.json")]
    public void TheRepositorysImagesAreValid(string relative)
    {
        ImageDefinition d = ImageDefinition.Load(RepoFile(relative));
        d.Validate(relative);
        Assert.NotEmpty(d.Kernel!.InitrdModules);
    }

    [Fact]
    public void TestImageExtendsTheShippedOne()
    {
        ImageDefinition d = ImageDefinition.Load(RepoFile("qemu-tests/image/hostos-test.json"));
        Assert.Equal("hostos-test", d.Name);
        Assert.Contains(d.Packages, p => p.Name == "libc6");          // from the base
        Assert.Contains(d.Packages, p => p.Name == "busybox-static"); // its own
        Assert.Contains(d.Services, s => s.Name == "debug-shell");
        Assert.Equal("linux-image-cloud-amd64", d.Kernel!.Package);
    }

    [Fact]
    public void UnknownFieldIsRejectedByName()
    {
        var e = Assert.Throws<InvalidDataException>(() => ImageDefinition.Load(Write("""{ "name": "x", "kernal": {} }""")));
        Assert.Contains("kernal", e.Message);
    }

    [Fact]
    public void EveryProblemIsListedAtOnce()
    {
        ImageDefinition d = ImageDefinition.Load(Write("""
            { "name": "bad name", "version": "one",
              "kernel": { "package": "linux-image-cloud-amd64", "cmdline": "quiet hostos.slot=a", "initrdModules": [] },
              "packages": [ { "name": "Libc6" }, { "name": "zstd", "files": ["usr/bin/zstd"] } ],
              "files": [ { "target": "/x", "source": "a", "content": "b" } ],
              "services": [ { "name": "s", "exec": ["s"] } ],
              "disk": { "espMiB": 8, "slotMiB": 256, "stateMiB": 256 } }
            """));
        var e = Assert.Throws<InvalidDataException>(() => d.Validate("img.json"));
        foreach (string expected in new[] { "name:", "version: 'one'", "set by the builder", "kernel.initrdModules",
                     "'Libc6'", "'usr/bin/zstd' must be absolute", "exactly one of", "disk.espMiB", "absolute path" })
        {
            Assert.Contains(expected, e.Message);
        }
    }
}

public class FsTreeTests
{
    [Fact]
    public void UsrMergeMapsTheSplitDirectories()
    {
        var t = new FsTree(usrMerge: true);
        Assert.Equal("/usr/lib/x86_64-linux-gnu/libc.so.6", t.Map("/lib/x86_64-linux-gnu/libc.so.6"));
        Assert.Equal("/usr/sbin/e2fsck", t.Map("/sbin/e2fsck"));
        Assert.Equal("/usr/bin/busybox", t.Map("//bin//busybox"));
        Assert.Equal("/library/x", t.Map("/library/x"));
        Assert.Equal("usr/lib", t.Nodes["/lib"].LinkTarget);
    }

    [Fact]
    public void ConflictingDeclarationsAreErrors()
    {
        var t = new FsTree(usrMerge: false);
        t.AddContent("/etc/a", "1");
        Assert.Throws<InvalidOperationException>(() => t.AddContent("/etc/a", "2"));
        Assert.Throws<InvalidOperationException>(() => t.AddDirectory("/etc/a"));
    }

    [Fact]
    public void CpioIsReadableByCpioAndReproducible()
    {
        var t = new FsTree(usrMerge: true);
        t.AddContent("/etc/initrd-release", "NAME=x\n");
        t.AddSymlink("/init", "usr/sbin/hostos-init");
        t.AddCharDevice("/dev/console", 5, 1, 0x180);
        var a = new MemoryStream();
        var b = new MemoryStream();
        t.WriteCpio(a);
        t.WriteCpio(b);
        Assert.Equal(a.ToArray(), b.ToArray());

        string file = Path.GetTempFileName();
        File.WriteAllBytes(file, a.ToArray());
        var psi = new System.Diagnostics.ProcessStartInfo("sh", ["-c", $"cpio -itv < {file}"]) { RedirectStandardOutput = true, RedirectStandardError = true };
        using var p = System.Diagnostics.Process.Start(psi)!;
        string listing = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        File.Delete(file);
        Assert.Equal(0, p.ExitCode);
        Assert.Contains("etc/initrd-release", listing);
        Assert.Contains("init -> usr/sbin/hostos-init", listing);
        Assert.Matches(@"(?m)^crw-------.*5,\s+1.*dev/console$", listing);
        Assert.Matches(@"(?m)^lrwxrwxrwx.*lib -> usr/lib$", listing);
    }
}

public class DiskLayoutTests
{
    [Fact]
    public void PartitionsAreContiguousAlignedAndFitTheDisk()
    {
        var layout = new DiskLayout(64, 256, 256);
        var parts = layout.Partitions;
        Assert.Equal(["esp", "root-a", "root-b", "state"], parts.Select(p => p.Label));
        Assert.Equal(1, parts[0].StartMiB);
        for (int i = 1; i < parts.Count; i++) Assert.Equal(parts[i - 1].StartMiB + parts[i - 1].SizeMiB, parts[i].StartMiB);
        Assert.Equal(parts[^1].StartMiB + parts[^1].SizeMiB + 1, layout.TotalMiB);
        Assert.Equal(parts[1].SizeMiB, parts[2].SizeMiB);
    }
}

public class PackageLockTests
{
    [Fact]
    public void SameVersionWithOtherBytesIsRefused_NewVersionIsRecorded()
    {
        string path = Path.GetTempFileName();
        string a = new('a', 64), b = new('b', 64);
        File.WriteAllText(path, $"libc6 2.36-9 {a}\n");
        var l = new PackageLock(path);
        l.Record("libc6", "2.36-9", a);
        Assert.Empty(l.Changes);
        var e = Assert.Throws<InvalidDataException>(() => l.Record("libc6", "2.36-9", b));
        Assert.Contains("libc6 2.36-9", e.Message);
        l.Record("libc6", "2.36-10", b);
        Assert.Equal(["libc6: 2.36-9 -> 2.36-10"], l.Changes);
        l.Save();
        Assert.Equal(("2.36-10", b), new PackageLock(path).Get("libc6"));
        File.Delete(path);
    }

    [Fact]
    public void MalformedLockIsNamed()
    {
        string path = Path.GetTempFileName();
        File.WriteAllText(path, "libc6 2.36\n");
        var e = Assert.Throws<InvalidDataException>(() => new PackageLock(path));
        Assert.Contains(":1:", e.Message);
        File.Delete(path);
    }
}
