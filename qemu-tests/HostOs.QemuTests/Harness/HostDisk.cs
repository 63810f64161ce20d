using System.Diagnostics;
using HostOs.Platform.Disk;

namespace HostOs.QemuTests.Harness;

/// <summary>
/// Looks inside a (stopped) VM's disk image from the host, with our own GPT parser and
/// the same tools an operator would use: mtools for the ESP, e2fsck for state.
/// </summary>
internal static class HostDisk
{
    public static GptPartition Partition(string disk, string label)
    {
        using var f = File.OpenRead(disk);
        byte[] header = new byte[512];
        f.Position = 512;
        f.ReadExactly(header);
        var (lba, count, size) = GptTable.ReadHeaderLayout(header);
        byte[] entries = new byte[count * size];
        f.Position = (long)lba * 512;
        f.ReadExactly(entries);
        return GptTable.Parse(header, entries).Partitions.Single(p => p.Name == label);
    }

    /// <summary>The file names in the ESP's loader/entries.</summary>
    public static List<string> BootEntries(string disk)
    {
        GptPartition esp = Partition(disk, "esp");
        string output = QemuMachine.Run("mdir", "-b", "-i", $"{disk}@@{esp.FirstLba * 512}", "::/loader/entries");
        return output.Split('\n', StringSplitOptions.RemoveEmptyEntries)
                     .Select(l => l.Trim().Split('/').Last())
                     .Where(n => n.EndsWith(".conf", StringComparison.Ordinal))
                     .Order(StringComparer.Ordinal).ToList();
    }

    /// <summary>A directory of the ESP as mdir lists it (names, sizes), for a test's log.</summary>
    public static string ListEsp(string disk, string espPath)
    {
        GptPartition esp = Partition(disk, "esp");
        try
        {
            return QemuMachine.Run("mdir", "-i", $"{disk}@@{esp.FirstLba * 512}", "::" + espPath);
        }
        catch (InvalidOperationException e)
        {
            return e.Message;
        }
    }

    public static void CopyToEsp(string disk, string content, string espPath)
    {
        GptPartition esp = Partition(disk, "esp");
        string tmp = Path.GetTempFileName();
        File.WriteAllText(tmp, content);
        QemuMachine.Run("mcopy", "-o", "-i", $"{disk}@@{esp.FirstLba * 512}", tmp, "::" + espPath);
        File.Delete(tmp);
    }

    public static string ReadFromEsp(string disk, string espPath)
    {
        GptPartition esp = Partition(disk, "esp");
        return QemuMachine.Run("mtype", "-i", $"{disk}@@{esp.FirstLba * 512}", "::" + espPath);
    }

    /// <summary>e2fsck -fn (full check, change nothing) on a copy of the state partition.</summary>
    public static (int Code, string Output) CheckState(string disk)
    {
        GptPartition state = Partition(disk, "state");
        string copy = Path.GetTempFileName();
        try
        {
            using (var src = File.OpenRead(disk))
            using (var dst = File.Create(copy))
            {
                src.Position = (long)state.FirstLba * 512;
                long length = (long)(state.LastLba - state.FirstLba + 1) * 512;
                byte[] buffer = new byte[1 << 20];
                while (length > 0)
                {
                    int n = src.Read(buffer, 0, (int)Math.Min(buffer.Length, length));
                    if (n == 0) break;
                    dst.Write(buffer, 0, n);
                    length -= n;
                }
            }
            var psi = new ProcessStartInfo("e2fsck", ["-fn", copy]) { RedirectStandardOutput = true, RedirectStandardError = true };
            using Process p = Process.Start(psi)!;
            string output = p.StandardOutput.ReadToEnd() + p.StandardError.ReadToEnd();
            p.WaitForExit();
            return (p.ExitCode, output);
        }
        finally
        {
            File.Delete(copy);
        }
    }
}
