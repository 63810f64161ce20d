using System.Diagnostics;
using System.Globalization;
using Microsoft.Win32.SafeHandles;

namespace HostOs.Platform.Disk;

/// <summary>A GPT partition found on a disk, with the device node that reaches it.</summary>
public sealed record BlockPartition(string Disk, string Device, GptPartition Entry)
{
    public override string ToString() =>
        $"{Device} (label '{Entry.Name}', partuuid {Entry.Id}, disk {Disk})";
}

/// <summary>
/// Finds partitions by reading each disk's GPT ourselves (no udev, no blkid): disks are
/// the entries of /sys/block, partition numbers come from each child's <c>partition</c>
/// file. Roots are parameters so tests can hand in a fake tree.
/// </summary>
public static class BlockDevices
{
    public static List<BlockPartition> Scan(string sysBlock = "/sys/block", string dev = "/dev")
    {
        var found = new List<BlockPartition>();
        if (!Directory.Exists(sysBlock)) return found;
        foreach (string diskDir in Directory.GetDirectories(sysBlock).Order(StringComparer.Ordinal))
        {
            string disk = Path.GetFileName(diskDir);
            if (disk.StartsWith("loop", StringComparison.Ordinal) || disk.StartsWith("ram", StringComparison.Ordinal)) continue;
            GptTable? table = TryReadGpt(Path.Combine(dev, disk), diskDir);
            if (table is null) continue;
            var byNumber = new Dictionary<int, string>();
            foreach (string child in Directory.GetDirectories(diskDir))
            {
                string numberFile = Path.Combine(child, "partition");
                if (File.Exists(numberFile) &&
                    int.TryParse(File.ReadAllText(numberFile).Trim(), CultureInfo.InvariantCulture, out int n))
                {
                    byNumber[n] = Path.Combine(dev, Path.GetFileName(child));
                }
            }
            foreach (GptPartition p in table.Partitions)
            {
                if (byNumber.TryGetValue(p.Number, out string? device))
                {
                    found.Add(new BlockPartition(disk, device, p));
                }
            }
        }
        return found;
    }

    private static GptTable? TryReadGpt(string device, string diskDir)
    {
        try
        {
            int sector = 512;
            string lbs = Path.Combine(diskDir, "queue", "logical_block_size");
            if (File.Exists(lbs)) sector = int.Parse(File.ReadAllText(lbs).Trim(), CultureInfo.InvariantCulture);
            using SafeFileHandle h = File.OpenHandle(device, FileMode.Open, FileAccess.Read);
            byte[] header = new byte[sector];
            if (RandomAccess.Read(h, header, sector) != sector) return null;
            var (entriesLba, count, size) = GptTable.ReadHeaderLayout(header);
            if (count <= 0 || count > 1024 || size > 4096) return null;
            byte[] entries = new byte[count * size];
            if (RandomAccess.Read(h, entries, (long)entriesLba * sector) != entries.Length) return null;
            return GptTable.Parse(header, entries);
        }
        catch (Exception e) when (e is IOException or InvalidDataException or UnauthorizedAccessException)
        {
            // A disk without a GPT (a config drive, a blank disk) is simply not ours.
            return null;
        }
    }

    /// <summary>
    /// Waits for a partition to appear: block devices show up asynchronously after their
    /// driver loads. A spec is <c>PARTLABEL=name</c> or <c>PARTUUID=guid</c>.
    /// </summary>
    public static BlockPartition WaitFor(string spec, TimeSpan timeout) => WaitFor(spec, timeout, out _);

    /// <summary>As above; <paramref name="all"/> is the scan it was found in, for reuse.</summary>
    public static BlockPartition WaitFor(string spec, TimeSpan timeout, out List<BlockPartition> all)
    {
        Func<BlockPartition, bool> match = ParseSpec(spec);
        var clock = Stopwatch.StartNew();
        while (true)
        {
            all = Scan();
            BlockPartition? hit = all.FirstOrDefault(match);
            if (hit is not null) return hit;
            if (clock.Elapsed > timeout)
            {
                string seen = string.Join(", ", all.Select(p => p.ToString()));
                throw new IOException($"no partition matches '{spec}' after {timeout.TotalSeconds:F0} s; seen: {(seen.Length == 0 ? "none" : seen)}");
            }
            Thread.Sleep(20);
        }
    }

    public static Func<BlockPartition, bool> ParseSpec(string spec)
    {
        int eq = spec.IndexOf('=');
        string key = eq < 0 ? "" : spec[..eq];
        string value = eq < 0 ? "" : spec[(eq + 1)..];
        return key switch
        {
            "PARTLABEL" when value.Length > 0 => p => p.Entry.Name == value,
            "PARTUUID" when Guid.TryParse(value, out Guid id) => p => p.Entry.Id == id,
            _ => throw new FormatException($"partition spec '{spec}': expected PARTLABEL=<name> or PARTUUID=<guid>"),
        };
    }
}
