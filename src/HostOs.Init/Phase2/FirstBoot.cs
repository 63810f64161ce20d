using System.Text;
using HostOs.Platform;
using HostOs.Platform.Config;
using HostOs.Platform.Disk;
using HostOs.Platform.Interop;
using Microsoft.Win32.SafeHandles;

namespace HostOs.Init.Phase2;

/// <summary>
/// First-boot configuration in the cloud convention (docs/first-boot.md): user-data from a
/// volume labelled "cidata" (FAT or ISO 9660, cloud-init's NoCloud) or from QEMU's fw_cfg
/// (opt/org.hostos/user-data). Applied once per instance id (meta-data's instance-id, else
/// the user-data's hash), written to /etc (state) so later boots keep it. Invalid
/// configuration is refused with every problem named on the console, nothing of it is
/// applied, and the boot goes on with what it had.
/// </summary>
internal static class FirstBoot
{
    public const string FwCfgUserData = "/sys/firmware/qemu_fw_cfg/by_name/opt/org.hostos/user-data/raw";
    public const string FwCfgMetaData = "/sys/firmware/qemu_fw_cfg/by_name/opt/org.hostos/meta-data/raw";
    public const string AppliedRecord = "/var/lib/hostos/first-boot.instance";
    private const string MountPoint = "/run/hostos/cidata";
    private const int MaxBytes = 1 << 20;

    public static void Run(Task modules)
    {
        (string UserData, string? MetaData, string Source)? found = FindConfigDrive(modules) ?? FromFwCfg(modules);
        if (found is not { } c) return;
        Dictionary<string, string> meta = c.MetaData is null ? [] : FirstBootConfig.ParseMetaData(c.MetaData);
        string instance = meta.GetValueOrDefault("instance-id")
            ?? "user-data-" + Fnv1a(Encoding.UTF8.GetBytes(c.UserData)).ToString("x16", System.Globalization.CultureInfo.InvariantCulture);
        if (File.Exists(AppliedRecord) && File.ReadAllText(AppliedRecord).Trim() == instance)
        {
            Log.Info($"first boot: {c.Source}: instance {instance} already applied");
            return;
        }
        FirstBootConfig config;
        try
        {
            config = FirstBootConfig.Parse(c.UserData, $"{c.Source} user-data");
        }
        catch (InvalidDataException e)
        {
            Log.Error($"first boot: configuration REFUSED, nothing of it applied; booting with what this machine had: {e.Message}");
            return;
        }
        string? hostname = config.Hostname ?? (meta.GetValueOrDefault("local-hostname") is string h && FirstBootConfig.IsHostname(h) ? h : null);
        Apply(config, hostname);
        Directory.CreateDirectory(Path.GetDirectoryName(AppliedRecord)!);
        AtomicFile.Write(AppliedRecord, Encoding.UTF8.GetBytes(instance + "\n"), durable: true);
        Log.Info($"first boot: {c.Source}: instance {instance} applied" + (hostname is null ? "" : $", hostname {hostname}") +
                 $", {config.HealthChecks.Count} health check(s), {config.Registries.Count} registr{(config.Registries.Count == 1 ? "y" : "ies")}, {config.Apps.Count} app(s)" +
                 (config.Update is null ? "" : $", updates from {config.Update.Server} ({config.Update.Channel})"));
    }

    /// <summary>FNV-1a, 64 bits: tells one user-data from another when meta-data names no instance (not a security check).</summary>
    internal static ulong Fnv1a(ReadOnlySpan<byte> data)
    {
        ulong h = 14695981039346656037;
        foreach (byte b in data) h = (h ^ b) * 1099511628211;
        return h;
    }

    private static void Apply(FirstBootConfig config, string? hostname)
    {
        if (hostname is not null) AtomicFile.Write("/etc/hostname", Encoding.ASCII.GetBytes(hostname + "\n"), durable: true);
        string healthDir = Health.BootAssessment.OperatorChecks;
        Directory.CreateDirectory(healthDir);
        foreach (string old in Directory.GetFiles(healthDir, "first-boot-*.json")) File.Delete(old);
        foreach (HealthCheck check in config.HealthChecks)
        {
            AtomicFile.Write(Path.Combine(healthDir, $"first-boot-{check.Name}.json"), Encoding.UTF8.GetBytes(FirstBootConfig.ToJson(check) + "\n"), durable: true);
        }
        if (config.Registries.Count > 0)
        {
            // Secrets: root only.
            const string path = AppPaths.Registries;
            AtomicFile.Write(path, Encoding.UTF8.GetBytes(FirstBootConfig.ToJson(config.Registries) + "\n"), durable: true,
                UnixFileMode.UserRead | UnixFileMode.UserWrite);
        }
        if (config.Update is UpdateSettings u)
        {
            AtomicFile.Write(UpdateSettings.Path, Encoding.UTF8.GetBytes(FirstBootConfig.ToJson(u) + "\n"), durable: true);
        }
        // App containers: each replaces the definition of its name (its volumes stay); the
        // app manager starts them later in the boot, pulling their images.
        foreach (AppContainer app in config.Apps) AppPaths.Save(app);
    }

    /// <summary>A disk or partition whose FAT or ISO 9660 label is "cidata" (any case), mounted read-only, its files read.</summary>
    private static (string, string?, string)? FindConfigDrive(Task modules)
    {
        foreach (string device in Candidates())
        {
            (string Type, string Label)? fs;
            try
            {
                fs = ReadLabel(device);
            }
            catch (IOException)
            {
                continue;
            }
            if (fs is not { } f || !f.Label.Equals("cidata", StringComparison.OrdinalIgnoreCase)) continue;
            modules.Wait(); // vfat / isofs
            Directory.CreateDirectory(MountPoint);
            try
            {
                Sys.Mount(device, MountPoint, f.Type, MountFlags.ReadOnly | MountFlags.NoSuid | MountFlags.NoDev | MountFlags.NoExec);
            }
            catch (SysException e)
            {
                Log.Error($"first boot: config drive {device} ({f.Type}) cannot be mounted: {e.Message}");
                return null;
            }
            try
            {
                string? user = ReadSmall(Path.Combine(MountPoint, "user-data"));
                if (user is null)
                {
                    Log.Error($"first boot: config drive {device} has no user-data");
                    return null;
                }
                return (user, ReadSmall(Path.Combine(MountPoint, "meta-data")), $"config drive {device}");
            }
            finally
            {
                Sys.Umount(MountPoint);
            }
        }
        return null;
    }

    private static (string, string?, string)? FromFwCfg(Task modules)
    {
        // Without QEMU's fw_cfg device (ACPI QEMU0002) there is nothing to wait for: the boot
        // does not wait for the modules on machines that are not QEMU VMs.
        const string acpi = "/sys/bus/acpi/devices";
        if (!Directory.Exists(acpi) || !Directory.EnumerateDirectories(acpi, "QEMU0002:*").Any()) return null;
        modules.Wait(); // qemu_fw_cfg
        string? user = ReadSmall(FwCfgUserData);
        return user is null ? null : (user, ReadSmall(FwCfgMetaData), "fw_cfg opt/org.hostos/user-data");
    }

    /// <summary>Whole disks and their partitions, from /sys/block.</summary>
    private static IEnumerable<string> Candidates()
    {
        if (!Directory.Exists("/sys/block")) yield break;
        foreach (string disk in Directory.GetDirectories("/sys/block").Order(StringComparer.Ordinal))
        {
            string name = Path.GetFileName(disk);
            if (name.StartsWith("loop", StringComparison.Ordinal) || name.StartsWith("ram", StringComparison.Ordinal)) continue;
            yield return "/dev/" + name;
            foreach (string part in Directory.GetDirectories(disk).Where(d => File.Exists(Path.Combine(d, "partition"))).Order(StringComparer.Ordinal))
            {
                yield return "/dev/" + Path.GetFileName(part);
            }
        }
    }

    private static (string, string)? ReadLabel(string device)
    {
        using SafeFileHandle h = File.OpenHandle(device, FileMode.Open, FileAccess.Read);
        byte[] head = new byte[FilesystemLabel.BytesNeeded];
        int n = RandomAccess.Read(h, head, 0);
        return FilesystemLabel.Read(head.AsSpan(0, n));
    }

    private static string? ReadSmall(string path)
    {
        if (!File.Exists(path)) return null;
        using FileStream f = File.OpenRead(path);
        byte[] buffer = new byte[MaxBytes + 1];
        int total = 0, n;
        while (total < buffer.Length && (n = f.Read(buffer, total, buffer.Length - total)) > 0) total += n;
        if (total > MaxBytes) throw new InvalidDataException($"{path} is larger than {MaxBytes >> 20} MiB");
        return Encoding.UTF8.GetString(buffer, 0, total);
    }
}
