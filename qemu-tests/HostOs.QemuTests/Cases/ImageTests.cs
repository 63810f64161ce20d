using HostOs.QemuTests.Harness;
using Xunit;

namespace HostOs.QemuTests.Cases;

/// <summary>The built image itself, before any boot.</summary>
public sealed class ImageTests
{
    [Fact]
    public void RootAndInitramfsAreReproducible()
    {
        string first = Path.Combine(Repo.Root, "out", "hostos-test");
        string second = Directory.CreateTempSubdirectory("hostos-rebuild-").FullName;
        try
        {
            // Same definition, same lock, same cache: a second build must give the same bytes.
            QemuMachine.Run("dotnet", Path.Combine(Repo.Root, "out", "imagebuilder", "hostos-imagebuilder.dll"),
                "build", Path.Combine(Repo.Root, "qemu-tests", "image", "hostos-test.json"),
                "--out", second, "--lock", Path.Combine(Repo.Root, "image", "packages.lock"),
                "--cache", Path.Combine(Repo.Root, ".cache", "apt"), "--repo", Repo.Root);
            foreach (string file in new[] { "root.img", "initrd.img", "vmlinuz" })
            {
                Assert.True(File.ReadAllBytes(Path.Combine(first, file)).AsSpan()
                                .SequenceEqual(File.ReadAllBytes(Path.Combine(second, file))),
                            $"{file} differs between two builds of the same inputs");
            }
        }
        finally
        {
            Directory.Delete(second, true);
        }
    }

    [Fact]
    public void DiskHasTheDocumentedLayoutAndOneCountedEntry()
    {
        string disk = Repo.Image("hostos");
        Assert.Equal(2048UL, HostDisk.Partition(disk, "esp").FirstLba);
        foreach (string label in new[] { "root-a", "root-b", "state" }) HostDisk.Partition(disk, label);
        Assert.Equal(["hostos-0.1.0+3.conf"], HostDisk.BootEntries(disk));
        string entry = HostDisk.ReadFromEsp(disk, "/loader/entries/hostos-0.1.0+3.conf");
        Assert.Contains("linux /hostos/0.1.0/vmlinuz", entry);
        Assert.Contains("hostos.slot=a", entry);
    }
}
