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
    /// <summary>Every mount of the ESP on the machine (the init's blessing, the updater) holds this lock while mounted.</summary>
    public const string LockPath = "/run/hostos-esp.lock";

    public string Root { get; }
    private readonly IDisposable _lock;
    private bool _mounted;

    private Esp(string root, IDisposable held)
    {
        Root = root;
        _lock = held;
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

    /// <summary>
    /// Mounts the ESP for one change, serialized with every other user of it on the machine
    /// (two writers of one FAT must never interleave). A mount point still holding the ESP
    /// from an earlier failure is unmounted first; any other refusal names what is mounted there.
    /// </summary>
    public static Esp Mount(BlockPartition esp, string mountPoint, TimeSpan? wait = null)
    {
        IDisposable held = FileLock.Acquire(LockPath, wait ?? TimeSpan.FromSeconds(60), "the EFI system partition");
        try
        {
            Directory.CreateDirectory(mountPoint);
            string full = Path.GetFullPath(mountPoint);
            if (Kernel.MountInfo.IsMountPoint(full))
            {
                // Left by a process that died while it held the ESP (the lock says nobody holds it now).
                Sys.Umount(full);
            }
            Sys.Mount(esp.Device, mountPoint, "vfat", MountFlags.NoSuid | MountFlags.NoDev | MountFlags.NoExec, "umask=0077");
            return new Esp(mountPoint, held);
        }
        catch
        {
            held.Dispose();
            throw;
        }
    }

    public void Dispose()
    {
        if (!_mounted) return;
        _mounted = false;
        try
        {
            // Any process that walks the file system can be inside the ESP for a moment: a
            // .NET service's default configuration watcher (a FileSystemWatcher on its content
            // root "/", which opens every directory it finds, the new mount included) made the
            // updater's status fail with EBUSY in the QEMU tests. Everything written is synced
            // already, so after a short wait the mount is detached and the kernel finishes the
            // unmount when the walker leaves.
            for (int attempt = 0; ; attempt++)
            {
                try
                {
                    Sys.Umount(Root);
                    break;
                }
                catch (SysException e) when (e.Errno == Errno.EBUSY && attempt < 20)
                {
                    Thread.Sleep(50);
                }
                catch (SysException e) when (e.Errno == Errno.EBUSY)
                {
                    Sys.Umount(Root, Sys.MNT_DETACH);
                    break;
                }
            }
        }
        finally
        {
            _lock.Dispose();
        }
    }
}
