using HostOs.Platform.Disk;
using HostOs.Platform.Interop;

namespace HostOs.Platform.Boot;

/// <summary>
/// The EFI system partition, mounted only while something changes on it (the boot
/// assessment's blessing, the updater's entries) and unmounted right after: a FAT file
/// system that is not mounted cannot be left dirty by a power cut.
/// </summary>
public sealed class Esp : IDisposable
{
    public string Root { get; }
    private bool _mounted;

    private Esp(string root)
    {
        Root = root;
        _mounted = true;
    }

    /// <summary>The ESP systemd-boot ran from (LoaderDevicePartUUID), else the ESP on the root's disk.</summary>
    public static BlockPartition Find(IReadOnlyList<BlockPartition> partitions, string rootDisk)
    {
        string? loaderPart = EfiVariables.ReadLoaderString("LoaderDevicePartUUID");
        if (Guid.TryParse(loaderPart, out Guid id) && partitions.FirstOrDefault(p => p.Entry.Id == id) is { } byId) return byId;
        return partitions.FirstOrDefault(p => p.Disk == rootDisk && p.Entry.Type == PartitionTypes.Esp)
            ?? throw new IOException($"no EFI system partition on {rootDisk}");
    }

    public static Esp Mount(BlockPartition esp, string mountPoint)
    {
        Directory.CreateDirectory(mountPoint);
        Sys.Mount(esp.Device, mountPoint, "vfat", MountFlags.NoSuid | MountFlags.NoDev | MountFlags.NoExec, "umask=0077");
        return new Esp(mountPoint);
    }

    public void Dispose()
    {
        if (!_mounted) return;
        _mounted = false;
        Sys.Umount(Root);
    }
}
