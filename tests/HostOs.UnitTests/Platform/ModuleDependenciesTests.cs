using HostOs.Platform.Kernel;

namespace HostOs.UnitTests.Platform;

public class ModuleDependenciesTests
{
    // Shape of Debian 6.1 cloud's real modules.dep (depmod output), trimmed.
    private const string Dep = """
        kernel/fs/erofs/erofs.ko: kernel/lib/libcrc32c.ko
        kernel/lib/libcrc32c.ko:
        kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
        kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
        kernel/drivers/virtio/virtio_pci_modern_dev.ko:
        kernel/drivers/virtio/virtio.ko:
        kernel/drivers/virtio/virtio_ring.ko:
        kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
        kernel/fs/nls/nls-x.ko:
        """;

    [Fact]
    public void EveryDependencyLoadsBeforeItsUser_EachOnce()
    {
        var deps = ModuleDependencies.Parse(Dep);
        IReadOnlyList<string> order = deps.LoadOrder(["virtio_blk", "virtio_pci", "erofs"]);
        Assert.Equal(order.Distinct().Count(), order.Count);
        int Pos(string name) => order.ToList().FindIndex(p => ModuleDependencies.NameOf(p) == name);
        Assert.True(Pos("virtio_ring") < Pos("virtio_blk"));
        Assert.True(Pos("virtio") < Pos("virtio_blk"));
        Assert.True(Pos("virtio_pci_modern_dev") < Pos("virtio_pci"));
        Assert.True(Pos("libcrc32c") < Pos("erofs"));
        Assert.Equal(8, order.Count);
    }

    [Fact]
    public void NamesUseUnderscoresForDashes()
    {
        var deps = ModuleDependencies.Parse(Dep);
        Assert.Equal("nls_x", ModuleDependencies.NameOf("kernel/fs/nls/nls-x.ko"));
        Assert.Equal("kernel/fs/nls/nls-x.ko", deps.PathOf("nls-x"));
    }

    [Fact]
    public void UnknownModuleIsNamed()
    {
        var e = Assert.Throws<KeyNotFoundException>(() => ModuleDependencies.Parse(Dep).LoadOrder(["nosuch"]));
        Assert.Contains("'nosuch'", e.Message);
    }

    [Fact]
    public void CycleIsAnError()
    {
        var deps = ModuleDependencies.Parse("a.ko: b.ko\nb.ko: a.ko\n");
        Assert.Throws<InvalidDataException>(() => deps.LoadOrder(["a"]));
    }

    [Fact]
    public void MalformedLineIsAnErrorWithItsNumber()
    {
        var e = Assert.Throws<InvalidDataException>(() => ModuleDependencies.Parse("a.ko:\nnot a dep line\n"));
        Assert.Contains("line 2", e.Message);
    }
}
