using System.Buffers.Binary;
using HostOs.Init.Processes;
using HostOs.Init.Services;
using HostOs.Platform.Disk;
using HostOs.Platform.Interop;
using Microsoft.Win32.SafeHandles;

namespace HostOs.Init.Phase2;

/// <summary>
/// The state partition: ext4, the only writable persistent place. At boot it is checked
/// with the root's own e2fsck (<c>-p</c>, then <c>-y</c> if that is not enough), created
/// with mke2fs when it holds no ext4 at all, and mounted at <c>/state</c>; <c>/var</c>
/// is a bind of <c>/state/var</c> and <c>/etc</c> an overlay with its upper layer in
/// <c>/state/etc</c>. When the partition cannot be repaired the boot goes on with tmpfs
/// instead (nothing persists) and the boot is reported unhealthy.
/// </summary>
internal sealed class StateVolume(ProcessTable processes)
{
    public const string MountPoint = "/state";
    public const string Label = "state";
    private static readonly TimeSpan FsckTimeout = TimeSpan.FromMinutes(10);

    public void Mount(BlockPartition state)
    {
        Ext4State fs = ReadSuperblock(state.Device);
        if (fs == Ext4State.Missing)
        {
            Log.Warn($"state: {state.Device} holds no ext4 file system: creating one");
            Run("/sbin/mke2fs", ["-t", "ext4", "-q", "-F", "-L", Label, "-E", "lazy_itable_init=1,lazy_journal_init=1", state.Device]);
        }
        else if (fs == Ext4State.Clean)
        {
            // Cleanly unmounted, no recorded error, no journal to replay: e2fsck -p would
            // only say "clean". Skipping it saves a process start on every normal boot.
            Log.Info($"state: {state.Device} is clean");
        }
        else
        {
            Log.Info($"state: {state.Device} is {fs}: checking");
            int code = Run("/sbin/e2fsck", ["-p", state.Device]);
            if (code >= 4)
            {
                Log.Warn($"state: e2fsck -p exited {code}: repairing with e2fsck -y");
                code = Run("/sbin/e2fsck", ["-y", state.Device]);
            }
            if (code >= 4)
            {
                throw new IOException($"state: e2fsck could not repair {state.Device} (exit code {code})");
            }
            if (code > 0) Log.Warn($"state: e2fsck repaired {state.Device} (exit code {code})");
        }
        Directory.CreateDirectory(MountPoint);
        Sys.Mount(state.Device, MountPoint, "ext4", MountFlags.NoSuid | MountFlags.NoDev, "errors=remount-ro");
    }

    /// <summary>No usable state partition: tmpfs in its place so the machine still boots.</summary>
    public static void MountFallback(string why)
    {
        Log.Error($"state: {why}; /var and /etc changes will NOT persist across reboots");
        Sys.Mount("tmpfs", MountPoint, "tmpfs", MountFlags.NoSuid | MountFlags.NoDev, "mode=0755");
    }

    /// <summary>/var from state, and /etc as an overlay whose writes land on state.</summary>
    public static void MountVarAndEtc()
    {
        string var = Path.Combine(MountPoint, "var");
        string upper = Path.Combine(MountPoint, "etc", "upper");
        string work = Path.Combine(MountPoint, "etc", "work");
        foreach (string d in new[] { var, upper, work }) Directory.CreateDirectory(d);
        Sys.Mount(var, "/var", null, MountFlags.Bind);
        // /var/run is /run (FHS), where libdbus and others look for the system bus.
        if (!Path.Exists("/var/run")) File.CreateSymbolicLink("/var/run", "../run");
        Sys.Mount("overlay", "/etc", "overlay", MountFlags.NoDev,
            $"lowerdir=/etc,upperdir={upper},workdir={work}");
    }

    private int Run(string path, string[] args)
    {
        var (read, write) = Sys.Pipe();
        Task<ExitStatus> run;
        using (write)
        {
            run = processes.RunAsync(new SpawnRequest
            {
                Path = path,
                Args = [path, .. args],
                Environment = [ProcessTable.DefaultPath],
                Stdout = write,
                Stderr = write,
            }, FsckTimeout);
        }
        OutputPump.Start(Path.GetFileName(path), read);
        return run.GetAwaiter().GetResult().ShellCode;
    }

    public enum Ext4State { Missing, Clean, NotClean, HasErrors, NeedsRecovery }

    public static Ext4State ReadSuperblock(string device)
    {
        using SafeFileHandle h = File.OpenHandle(device, FileMode.Open, FileAccess.Read);
        byte[] sb = new byte[1024];
        return RandomAccess.Read(h, sb, 1024) == sb.Length ? Classify(sb) : Ext4State.Missing;
    }

    /// <summary>
    /// From the ext4 superblock (at byte 1024 of the device; Documentation/filesystems/
    /// ext4/super.rst): s_magic (0x38) = 0xEF53; s_state (0x3A): 1 = cleanly unmounted,
    /// 2 = errors detected; s_feature_incompat (0x60) bit 0x4 = journal needs recovery.
    /// </summary>
    public static Ext4State Classify(ReadOnlySpan<byte> sb)
    {
        if (BinaryPrimitives.ReadUInt16LittleEndian(sb[0x38..]) != 0xEF53) return Ext4State.Missing;
        ushort state = BinaryPrimitives.ReadUInt16LittleEndian(sb[0x3A..]);
        uint incompat = BinaryPrimitives.ReadUInt32LittleEndian(sb[0x60..]);
        if ((state & 2) != 0) return Ext4State.HasErrors;
        if ((incompat & 0x4) != 0) return Ext4State.NeedsRecovery;
        return (state & 1) != 0 ? Ext4State.Clean : Ext4State.NotClean;
    }

    /// <summary>The state partition: labelled "state" (else of type /var) on the root's disk.</summary>
    public static BlockPartition? Find(IReadOnlyList<BlockPartition> partitions, string rootDisk) =>
        partitions.FirstOrDefault(p => p.Disk == rootDisk && p.Entry.Name == Label)
        ?? partitions.FirstOrDefault(p => p.Disk == rootDisk && p.Entry.Type == PartitionTypes.Var);
}
